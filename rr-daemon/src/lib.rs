//! The embeddable BGP speaker and the route-reflector daemon. Work in progress: see the
//! `rr-daemon` issue.
