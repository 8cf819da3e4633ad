//! RFC 4271 peer session state machine (sans-IO). Work in progress: see the `bgp-fsm` issue.

#![warn(missing_docs)]
