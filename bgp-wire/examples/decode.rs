//! Decodes raw BGP messages stored back to back (a capture of one speaker's side of a
//! session) and prints one line per message, readable or as JSON.
//!
//! ```text
//! cargo run -p bgp-wire --example decode -- --json [--ebgp|--ibgp] [--two-octet-as] \
//!     [--add-path ipv4,ipv6] [--extended-message] FILE
//! ```
//!
//! The session context defaults to eBGP, IPv4 and IPv6 unicast, 4-octet AS, no ADD-PATH.
//! Every UPDATE carries its RFC 7606 `treatment` and `issues`; anything that resets the
//! session carries the `notification` to send. A header error ends the stream, since
//! nothing after it can be framed.

use std::io::Read;
use std::process::ExitCode;

use anyhow::Context;
use bgp_wire::update::{Treatment, UpdateView};
use bgp_wire::{DecodeError, Family, FamilySet, Framer, MessageView, Notification, SessionCtx};
use bytes::Bytes;
use clap::Parser;
use serde_json::{Value, json};

/// Decode raw BGP messages stored back to back.
#[derive(Parser)]
#[command(name = "decode")]
struct Args {
    /// Print one JSON object per line instead of text.
    #[arg(long)]
    json: bool,
    /// External session (the default): LOCAL_PREF, ORIGINATOR_ID, CLUSTER_LIST are discarded.
    #[arg(long, conflicts_with = "ibgp")]
    ebgp: bool,
    /// Internal session.
    #[arg(long)]
    ibgp: bool,
    /// The session did not negotiate 4-octet AS numbers (RFC 6793).
    #[arg(long)]
    two_octet_as: bool,
    /// Families whose NLRI carry ADD-PATH path identifiers (RFC 7911): ipv4, ipv6.
    #[arg(long, value_delimiter = ',')]
    add_path: Vec<String>,
    /// The session negotiated extended messages (RFC 8654).
    #[arg(long)]
    extended_message: bool,
    /// IPv4 NLRI may have IPv6 next hops (RFC 8950).
    #[arg(long)]
    extended_next_hop: bool,
    /// Enforce that AS_PATH starts with this AS (eBGP only).
    #[arg(long)]
    peer_as: Option<u32>,
    /// The capture, or `-` for standard input.
    file: String,
}

fn family(name: &str) -> anyhow::Result<Family> {
    match name {
        "ipv4" | "ipv4-unicast" => Ok(Family::Ipv4Unicast),
        "ipv6" | "ipv6-unicast" => Ok(Family::Ipv6Unicast),
        other => anyhow::bail!("unknown family {other:?} (expected ipv4 or ipv6)"),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("decode: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut data = Vec::new();
    if args.file == "-" {
        std::io::stdin()
            .read_to_end(&mut data)
            .context("reading standard input")?;
    } else {
        data = std::fs::read(&args.file).with_context(|| format!("reading {}", args.file))?;
    }
    let mut ctx = SessionCtx {
        ibgp: args.ibgp,
        four_octet_as: !args.two_octet_as,
        extended_message: args.extended_message,
        ..SessionCtx::default()
    };
    ctx.add_path_rx = args
        .add_path
        .iter()
        .map(|f| family(f))
        .collect::<anyhow::Result<FamilySet>>()?;
    ctx.add_path_tx = ctx.add_path_rx;
    if args.extended_next_hop {
        ctx.extended_next_hop = FamilySet::only(Family::Ipv4Unicast);
    }
    ctx.policy.enforce_first_as = args.peer_as;

    let mut framer = Framer::new();
    framer.set_extended_message(args.extended_message);
    for (i, frame) in framer.frames(Bytes::from(data)).enumerate() {
        let (mut value, stop) = match frame {
            Ok(frame) => (describe(&frame.bytes, &ctx), false),
            Err(e) => (error(None, &e), true),
        };
        if args.json {
            if let Value::Object(o) = &mut value {
                o.remove("_text");
            }
            println!("{value}");
        } else {
            println!("#{i} {}", text(&value));
        }
        if stop {
            break;
        }
    }
    Ok(())
}

fn notification_json(n: &Notification) -> Value {
    json!({
        "code": n.code.0,
        "subcode": n.subcode,
        "name": n.to_string(),
        "data": hex(&n.data),
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn error(ty: Option<&str>, e: &DecodeError) -> Value {
    let mut v = json!({
        "type": ty.unwrap_or("INVALID"),
        "treatment": Treatment::SessionReset.name(),
        "error": e.to_string(),
    });
    if e.sends_notification() {
        v["notification"] = notification_json(&Notification::from(e));
    }
    v
}

fn describe(msg: &[u8], ctx: &SessionCtx) -> Value {
    let ty = bgp_wire::MessageType(msg[18]);
    let name = ty.name().unwrap_or("INVALID");
    let view = match MessageView::parse(msg, ctx) {
        Ok(v) => v,
        Err(e) => return error(Some(name), &e),
    };
    let mut v = match view {
        MessageView::Open(o) => {
            let owned = bgp_wire::open::Open::decode(&msg[19..]);
            let mut v = json!({ "type": name });
            match owned {
                Ok(open) => {
                    let o2 = serde_json::to_value(&open).unwrap_or(Value::Null);
                    if let (Value::Object(dst), Value::Object(src)) = (&mut v, o2) {
                        dst.extend(src);
                    }
                    v["version"] = json!(o.version());
                }
                Err(e) => return error(Some(name), &e),
            }
            v
        }
        MessageView::Update(u) => update(&u),
        MessageView::Notification(n) => {
            let owned = Notification::with_data(n.code, n.subcode, Bytes::copy_from_slice(n.data));
            let mut v = json!({
                "type": name,
                "code": n.code.0,
                "subcode": n.subcode,
                "name": owned.to_string(),
                "data": hex(n.data),
            });
            if let Some(text) = n.shutdown_communication() {
                v["communication"] = json!(text);
            }
            v
        }
        MessageView::Keepalive => json!({ "type": name }),
        MessageView::RouteRefresh(r) => json!({
            "type": name,
            "afi": r.afi.0,
            "safi": r.safi.0,
            "subtype": r.subtype.name().map_or_else(|| json!(r.subtype.0), |s| json!(s)),
        }),
    };
    v["length"] = json!(msg.len());
    v
}

fn update(u: &UpdateView<'_>) -> Value {
    let owned = u.to_update();
    let mut v = json!({
        "type": "UPDATE",
        "treatment": u.treatment().name(),
        "issues": u.issues().iter().map(|i| {
            let mut j = serde_json::to_value(i).unwrap_or(Value::Null);
            j["treatment"] = json!(i.treatment.name());
            j
        }).collect::<Vec<_>>(),
        "withdrawn": owned.withdrawn,
        "attributes": owned.attributes,
        "nlri": owned.nlri,
    });
    v["_text"] = json!(
        owned
            .attributes
            .iter()
            .map(|a| format!("{}={}", a.ty(), a))
            .collect::<Vec<_>>()
            .join(" ")
    );
    if u.treatment() == Treatment::TreatAsWithdraw {
        v["treat_as_withdrawn"] = json!(u.announced().collect::<Vec<_>>());
    }
    if let Some(f) = u.end_of_rib() {
        v["end_of_rib"] = json!(f.name());
    }
    if let Some(n) = u.notification() {
        v["notification"] = notification_json(&n);
    }
    v
}

/// The readable form of what `describe` found.
fn text(v: &Value) -> String {
    let mut s = v["type"].as_str().unwrap_or("?").to_string();
    if let Some(len) = v["length"].as_u64() {
        s += &format!(" ({len} bytes)");
    }
    if let Some(t) = v["treatment"].as_str() {
        s += &format!(" [{t}]");
    }
    match v["type"].as_str() {
        Some("OPEN") if v["asn"].is_number() => {
            s += &format!(
                " AS {} hold {} id {} capabilities {}",
                v["asn"],
                v["hold_time"],
                v["bgp_id"].as_str().unwrap_or("?"),
                v["capabilities"]
            );
        }
        Some("UPDATE") => {
            if let Some(f) = v["end_of_rib"].as_str() {
                s += &format!(" End-of-RIB {f}");
            }
            let list = |k: &str| -> Vec<String> {
                v[k].as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|n| n["prefix"].as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let (w, n) = (list("withdrawn"), list("nlri"));
            if !w.is_empty() {
                s += &format!(" withdraw {}", w.join(" "));
            }
            if let Some(attrs) = v["_text"].as_str().filter(|t| !t.is_empty()) {
                s += &format!(" {attrs}");
            }
            if !n.is_empty() {
                s += &format!(" announce {}", n.join(" "));
            }
        }
        Some("NOTIFICATION") => {
            s += &format!(" {}", v["name"].as_str().unwrap_or("?"));
        }
        Some("ROUTE-REFRESH") => {
            s += &format!(" afi {} safi {} {}", v["afi"], v["safi"], v["subtype"]);
        }
        _ => {}
    }
    if let Some(issues) = v["issues"].as_array().filter(|a| !a.is_empty()) {
        s += &format!(" issues {}", Value::Array(issues.clone()));
    }
    if let Some(e) = v["error"].as_str() {
        s += &format!(" error: {e}");
    }
    if v["notification"].is_object() {
        s += &format!(
            " -> send NOTIFICATION {}",
            v["notification"]["name"].as_str().unwrap_or("?")
        );
    }
    s
}
