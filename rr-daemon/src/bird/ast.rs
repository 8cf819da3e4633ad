//! The BIRD 1.6 configuration as written: the subset Calico's confd renders, every node
//! with the place it was written at ([`Pos`]), so that the translation can name
//! `FILE:LINE:COL` for anything it cannot carry over.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

/// Where something was written: file (as the including file named it), line and column
/// (from 1, in characters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pos {
    /// The file.
    pub file: Arc<str>,
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1, in characters.
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// The kind of a `protocol` or `template`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtoKind {
    /// `kernel`: BIRD's table to and from the kernel's.
    Kernel,
    /// `device`: interface events.
    Device,
    /// `direct`: interface prefixes.
    Direct,
    /// `static`: configured routes.
    Static,
    /// `bgp`.
    Bgp,
}

impl ProtoKind {
    /// The keyword, as written in the file.
    pub fn keyword(self) -> &'static str {
        match self {
            Self::Kernel => "kernel",
            Self::Device => "device",
            Self::Direct => "direct",
            Self::Static => "static",
            Self::Bgp => "bgp",
        }
    }

    /// The name BIRD gives an unnamed protocol's column in `show protocols` (`Kernel`,
    /// `Device`, `Direct`, `Static`, `BGP`).
    pub fn proto_column(self) -> &'static str {
        match self {
            Self::Kernel => "Kernel",
            Self::Device => "Device",
            Self::Direct => "Direct",
            Self::Static => "Static",
            Self::Bgp => "BGP",
        }
    }
}

/// One top-level item.
#[derive(Clone, Debug)]
pub enum Item {
    /// `router id A.B.C.D;`
    RouterId(std::net::Ipv4Addr, Pos),
    /// `listen bgp [address A] [port P];`
    ListenBgp {
        /// `address`.
        address: Option<IpAddr>,
        /// `port`.
        port: Option<u16>,
        /// Where.
        pos: Pos,
    },
    /// `template KIND NAME { ... }` or `protocol KIND [NAME] [from TEMPLATE] { ... }`.
    Protocol(Protocol),
    /// `function NAME(PARAMS) { ... }`.
    Function(Function),
    /// `filter NAME { ... }`.
    Filter(Filter),
}

/// A `protocol` or a `template`.
#[derive(Clone, Debug)]
pub struct Protocol {
    /// `template` rather than `protocol`.
    pub template: bool,
    /// The kind.
    pub kind: ProtoKind,
    /// Its name, if written.
    pub name: Option<String>,
    /// `from TEMPLATE`, with where the template's name was written.
    pub from: Option<(String, Pos)>,
    /// The options, in file order.
    pub options: Vec<Opt>,
    /// Where `protocol` / `template` was written.
    pub pos: Pos,
}

/// One option of a protocol: the words up to its `;`, or a filter.
#[derive(Clone, Debug)]
pub struct Opt {
    /// What it says.
    pub kind: OptKind,
    /// Where its first word was written.
    pub pos: Pos,
}

/// A protocol option.
#[derive(Clone, Debug)]
pub enum OptKind {
    /// `import ...` (`true`) or `export ...` (`false`).
    Channel(bool, FilterRef),
    /// `debug ...;`: logging only.
    Debug,
    /// `description "..."`.
    Description(String),
    /// `interface [-]"PATTERN", ...;` (`true` for a `-`, excluded).
    Interface(Vec<(bool, String, Pos)>),
    /// Any other option: its words.
    Words(Vec<Word>),
}

/// A word of an option.
#[derive(Clone, Debug, PartialEq)]
pub struct Word {
    /// The word.
    pub value: Value,
    /// Where.
    pub pos: Pos,
}

/// The value of a [`Word`].
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A keyword or a name.
    Ident(String),
    /// A number.
    Num(u64),
    /// An address.
    Ip(IpAddr),
    /// A prefix.
    Prefix(IpNet),
    /// A quoted string.
    Str(String),
    /// `,`.
    Comma,
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ident(s) => f.write_str(s),
            Self::Num(n) => write!(f, "{n}"),
            Self::Ip(a) => write!(f, "{a}"),
            Self::Prefix(p) => write!(f, "{p}"),
            Self::Str(s) => write!(f, "{s:?}"),
            Self::Comma => f.write_str(","),
        }
    }
}

/// `import`/`export` of a protocol.
#[derive(Clone, Debug)]
pub enum FilterRef {
    /// `all`.
    All,
    /// `none`.
    None,
    /// `filter NAME`.
    Named(String, Pos),
    /// `filter { ... }`.
    Inline(Vec<Stmt>),
    /// `where CONDITION`.
    Where(Expr),
}

/// `function NAME(TYPE NAME, ...) { ... }`.
#[derive(Clone, Debug)]
pub struct Function {
    /// The name (quotes removed).
    pub name: String,
    /// The parameters' names, in order.
    pub params: Vec<String>,
    /// The body.
    pub body: Vec<Stmt>,
    /// Where.
    pub pos: Pos,
}

/// `filter NAME { ... }`.
#[derive(Clone, Debug)]
pub struct Filter {
    /// The name.
    pub name: String,
    /// The body.
    pub body: Vec<Stmt>,
    /// Where.
    pub pos: Pos,
}

/// A statement of a filter or function.
#[derive(Clone, Debug)]
pub enum Stmt {
    /// `if COND then A [else B]`.
    If {
        /// The condition.
        cond: Expr,
        /// `then`.
        then: Vec<Self>,
        /// `else` (empty when absent).
        els: Vec<Self>,
        /// Where `if` was written.
        pos: Pos,
    },
    /// `accept;`
    Accept(Pos),
    /// `reject;`
    Reject(Pos),
    /// `NAME = EXPR;`
    Assign {
        /// The attribute or variable.
        target: String,
        /// The value.
        value: Expr,
        /// Where.
        pos: Pos,
    },
    /// `NAME(ARGS);`
    Call {
        /// The function.
        name: String,
        /// The arguments.
        args: Vec<Expr>,
        /// Where.
        pos: Pos,
    },
    /// `ATTR.METHOD(ARGS);` (`bgp_community.add(...)`, `bgp_path.prepend(...)`).
    Method {
        /// The attribute.
        target: String,
        /// `add`, `delete`, `prepend`, ...
        method: String,
        /// The arguments.
        args: Vec<Expr>,
        /// Where.
        pos: Pos,
    },
}

/// An expression with where it was written.
#[derive(Clone, Debug)]
pub struct Expr {
    /// What it is.
    pub kind: ExprKind,
    /// Where it starts.
    pub pos: Pos,
}

/// A binary operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    /// `||`
    Or,
    /// `&&`
    And,
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `~`
    Match,
    /// `!~`
    NotMatch,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
}

impl BinOp {
    /// As written.
    pub fn text(self) -> &'static str {
        match self {
            Self::Or => "||",
            Self::And => "&&",
            Self::Eq => "=",
            Self::Ne => "!=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Match => "~",
            Self::NotMatch => "!~",
            Self::Add => "+",
            Self::Sub => "-",
            Self::Mul => "*",
            Self::Div => "/",
        }
    }
}

/// One item of a prefix set: `P`, `P+`, `P-` or `P{A,B}`, as the lengths it allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefixPat {
    /// The prefix.
    pub prefix: IpNet,
    /// Shortest length matched.
    pub ge: u8,
    /// Longest length matched.
    pub le: u8,
}

/// An expression.
#[derive(Clone, Debug)]
pub enum ExprKind {
    /// A number.
    Num(i64),
    /// `true` / `false`.
    Bool(bool),
    /// A quoted string.
    Str(String),
    /// An address.
    Ip(IpAddr),
    /// A prefix (outside a set).
    Prefix(IpNet),
    /// A name: a route attribute (`net`, `krt_metric`), a constant (`RTS_BGP`) or a
    /// parameter.
    Sym(String),
    /// `(A, B)` or `(A, B, C)`: a community, a large community.
    Tuple(Vec<Expr>),
    /// `[ ... ]` of prefixes.
    PrefixSet(Vec<PrefixPat>),
    /// `[ ... ]` of other values (`[ RTS_BGP ]`).
    Set(Vec<Expr>),
    /// `[= ... =]`: an AS path mask, as written.
    PathMask(String),
    /// `defined(ATTR)`.
    Defined(String),
    /// `!E`.
    Not(Box<Expr>),
    /// `A op B`.
    Bin(BinOp, Box<Expr>, Box<Expr>),
    /// `NAME(ARGS)` used as a value.
    Call(String, Vec<Expr>),
}
