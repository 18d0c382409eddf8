//! Opening many connections at once: a fixed number of lanes, each connecting its share of the
//! connections one after the other, so the broker's listen backlog is never flooded by more
//! SYNs than there are lanes (a flooded backlog costs a 1 s SYN retransmission and would
//! measure the kernel, not the broker).

use std::net::SocketAddr;
use std::sync::Arc;

use crate::conn::{Conn, LoadError};
use crate::stats::{now_ns, Errors};
use crate::wire;

/// Keep-alive the generator announces: longer than any run, at most bizzy's default
/// `max_keepalive` (20 min), so no scenario has to send PINGREQs to stay connected.
pub const KEEP_ALIVE_S: u16 = 900;

/// What `connect_all` opens.
#[derive(Clone)]
pub struct Plan {
    pub addr: SocketAddr,
    /// Client ids are `{tag}-{role}-{id}`.
    pub tag: String,
    pub role: &'static str,
    /// Subscribe each connection to `filter(id)` at `sub_qos`, in the same write as CONNECT.
    pub filter: Option<fn(usize) -> String>,
    pub sub_qos: u8,
    pub lanes: usize,
    /// Initial read buffer of each connection.
    pub rbuf: usize,
    /// A password: each connection logs in as the sensor `{role}-{id}` (client id and user
    /// name), as a sensor of the database does, instead of the anonymous `{tag}-{role}-{id}`.
    pub password: Option<String>,
}

pub struct Member {
    pub id: usize,
    pub conn: Conn,
    /// When the TCP connect began.
    pub began_ns: u64,
    /// When CONNACK came, and SUBACK if the plan subscribes (else equal to `connack_ns`).
    pub connack_ns: u64,
    pub suback_ns: u64,
}

/// Opens connections `0..n`; the ones that fail are reported to `errors` and left out.
pub async fn connect_all(plan: &Plan, n: usize, errors: &Arc<Errors>) -> Vec<Member> {
    let lanes = plan.lanes.clamp(1, n.max(1));
    let mut handles = Vec::with_capacity(lanes);
    for lane in 0..lanes {
        let plan = plan.clone();
        let errors = errors.clone();
        handles.push(tokio::spawn(async move {
            let mut members = Vec::new();
            for id in (lane..n).step_by(lanes) {
                match join(&plan, id).await {
                    Ok(m) => members.push(m),
                    Err(e) => errors.report(&format!("{} {id}", plan.role), &e),
                }
            }
            members
        }));
    }
    let mut all = Vec::with_capacity(n);
    for h in handles {
        match h.await {
            Ok(members) => all.extend(members),
            Err(e) => eprintln!("mqtt_load: a connecting task failed: {e}"),
        }
    }
    all.sort_by_key(|m| m.id);
    all
}

async fn join(plan: &Plan, id: usize) -> Result<Member, LoadError> {
    let began_ns = now_ns();
    let mut conn = Conn::tcp(plan.addr, plan.rbuf).await?;
    match &plan.password {
        Some(password) => {
            let device = format!("{}-{id}", plan.role);
            wire::connect_login(&mut conn.out, &device, password, KEEP_ALIVE_S);
        }
        None => {
            let client_id = format!("{}-{}-{id}", plan.tag, plan.role);
            wire::connect(&mut conn.out, &client_id, KEEP_ALIVE_S);
        }
    }
    if let Some(filter) = plan.filter {
        wire::subscribe(&mut conn.out, 1, filter(id).as_bytes(), plan.sub_qos);
    }
    conn.flush().await?;
    conn.expect_connack().await?;
    let connack_ns = now_ns();
    let mut suback_ns = connack_ns;
    if plan.filter.is_some() {
        conn.expect_suback(1).await?;
        suback_ns = now_ns();
    }
    Ok(Member {
        id,
        conn,
        began_ns,
        connack_ns,
        suback_ns,
    })
}
