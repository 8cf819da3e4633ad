//! Calico's label selector language (`has(k)`, `!has(k)`, `k == 'v'`, `k != 'v'`,
//! `k in {...}`, `&&`, `||`, `!`, `all()`, parentheses).
