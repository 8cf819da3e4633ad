//! A minimal node agent that embeds the speaker, as Calico's node agent would: it peers
//! with a route reflector, originates the node's address block, and prints every best-path
//! change it would program into the data plane.
//!
//! ```text
//! cargo run -p rr-daemon --example node_agent -- --node 127.0.0.3 --block 198.51.100.0/24 \
//!     --reflector 127.0.0.2 --port 1179 --asn 65000 --next-hop 192.0.2.3
//! ```
//!
//! With the reflector and node 127.0.0.4 of `examples/quickstart/` running (this agent
//! takes the place of node 127.0.0.3), it prints `route replace 203.0.113.0/24 via
//! 192.0.2.4`, and node 127.0.0.4 learns the agent's block. On loopback the next hop must
//! be given: the session's own 127.x address is refused as a martian next hop. Stops on
//! Ctrl-C.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use anyhow::Context;
use clap::Parser;
use ipnet::IpNet;
use rr_daemon::config::Config;
use rr_daemon::speaker::Speaker;

/// A node agent embedding the speaker.
#[derive(Parser)]
struct Args {
    /// This node's address (router id, source of the session).
    #[arg(long)]
    node: Ipv4Addr,
    /// The address block this node owns.
    #[arg(long)]
    block: IpNet,
    /// The route reflector.
    #[arg(long)]
    reflector: IpAddr,
    /// The reflector's port.
    #[arg(long, default_value_t = 179)]
    port: u16,
    /// AS number of the cluster.
    #[arg(long, default_value_t = 64512)]
    asn: u32,
    /// Next hop of the block; by default our address on the session.
    #[arg(long)]
    next_hop: Option<Ipv4Addr>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    // The agent renders the same TOML a daemon reads: one schema, one validation.
    let toml = format!(
        "[speaker]\nasn = {asn}\nrouter_id = \"{node}\"\nlisten = []\n\n\
         [api]\nenabled = false\n\n\
         [[peer]]\naddress = \"{rr}\"\nasn = {asn}\nport = {port}\n\
         source_address = \"{node}\"\nconnect_retry = 1\n",
        asn = a.asn,
        node = a.node,
        rr = a.reflector,
        port = a.port,
    );
    let config =
        Config::parse(&toml, Path::new("node-agent")).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (speaker, core) = Speaker::start(config).await?;

    // The node's block; without a next hop, each session gets our address on it.
    let attrs = rib::Attrs {
        next_hop: a.next_hop.map(bgp_wire::attr::NextHop::V4),
        ..rib::Attrs::default()
    };
    speaker.originate(a.block, attrs).await?;
    let mut changes = speaker.subscribe().await?;
    println!(
        "node {} announces {}; waiting for routes (Ctrl-C stops)",
        a.node, a.block
    );
    loop {
        tokio::select! {
            c = changes.recv() => {
                let Some(c) = c else { break };
                if c.local {
                    continue; // Our own block: the data plane has it already.
                }
                if c.next_hops.is_empty() {
                    println!("route del {}", c.prefix);
                } else {
                    let via: Vec<String> = c.next_hops.iter().map(ToString::to_string).collect();
                    println!("route replace {} via {}", c.prefix, via.join(" "));
                }
            }
            r = tokio::signal::ctrl_c() => {
                r.context("cannot watch Ctrl-C")?;
                break;
            }
        }
    }
    speaker.shutdown().await?;
    let _ = core.await;
    Ok(())
}
