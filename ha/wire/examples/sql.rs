//! Runs SQL on a dqlite cluster's leader and prints each row as a line of
//! tab-separated values; a statement per argument, all in one transaction.
//!
//! ```text
//! cargo run -p dqlite-wire --example sql -- 127.0.0.1:9001,127.0.0.1:9002 \
//!     "SELECT count(*) FROM onboarding_sessions"
//! ```

use std::time::Duration;

use dqlite_wire::{connect_leader, Value};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let nodes: Vec<String> = args
        .next()
        .ok_or("usage: sql NODES SQL...")?
        .split(',')
        .map(String::from)
        .collect();
    let mut leader = connect_leader(&nodes, Duration::from_secs(2))?;
    eprintln!("leader: node {} at {}", leader.id, leader.address);
    let db = leader.conn.open("onboarding.db")?;
    leader.conn.exec(db, "BEGIN IMMEDIATE", &[])?;
    for sql in args {
        let rows = leader.conn.query(db, &sql, &[])?;
        for row in rows.rows {
            let cells: Vec<String> = row
                .iter()
                .map(|v| match v {
                    Value::Integer(n) => n.to_string(),
                    Value::Float(x) => x.to_string(),
                    Value::Text(t) => t.clone(),
                    Value::Blob(b) => format!("<{} bytes>", b.len()),
                    Value::Null => "NULL".to_string(),
                })
                .collect();
            println!("{}", cells.join("\t"));
        }
    }
    leader.conn.exec(db, "COMMIT", &[])?;
    Ok(())
}
