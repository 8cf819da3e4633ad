//! Adj-RIB-In, Loc-RIB, Adj-RIB-Out and route reflection. Work in progress: see the `rib` issue.

#![warn(missing_docs)]
