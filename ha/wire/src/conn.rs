//! [`Conn`]: one connection to one node, its requests one at a time; and
//! [`connect_leader`], which finds the node that accepts writes.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::message::{Request, Response, Value, WORD};
use crate::{Error, Result};

/// The protocol version this client speaks (dqlite's "version one").
const VERSION_ONE: u64 = 1;

// Request types.
const LEADER: u8 = 0;
const CLIENT: u8 = 1;
const OPEN: u8 = 3;
const EXEC_SQL: u8 = 8;
const QUERY_SQL: u8 = 9;
const ADD: u8 = 12;
const ASSIGN: u8 = 13;
const REMOVE: u8 = 14;
const CLUSTER: u8 = 16;
const TRANSFER: u8 = 17;

// Response types.
const FAILURE: u8 = 0;
const NODE: u8 = 1;
const WELCOME: u8 = 2;
const NODES: u8 = 3;
const DB: u8 = 4;
const RESULT: u8 = 6;
const ROWS: u8 = 7;
const EMPTY: u8 = 8;

/// The first byte of a row header that ends the rows: all of them, or
/// this message's part (more messages follow).
const ROWS_DONE: u8 = 0xff;
const ROWS_PART: u8 = 0xee;

/// A node's role in the Raft configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Voter = 0,
    StandBy = 1,
    Spare = 2,
}

/// One member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: u64,
    pub address: String,
    /// 0 voter, 1 stand-by, 2 spare.
    pub role: u64,
}

/// The rows of a query: column names, then each row's values.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

/// A connection that has sent the handshake.
pub struct Conn {
    stream: TcpStream,
    address: String,
    watch: Option<Watch>,
}

/// Who to ask whether this connection's node still leads, while an answer
/// is slow to come: see [`Conn::watch_leadership`].
struct Watch {
    others: Vec<String>,
    every: Duration,
}

/// The leader found by [`connect_leader`], connected and registered.
pub struct Leader {
    pub conn: Conn,
    pub id: u64,
    pub address: String,
}

/// Finds the leader among `nodes` (any of them may be down or a follower):
/// asks each in turn who leads, and connects to that node. `timeout` bounds
/// each connect and each answer.
pub fn connect_leader(nodes: &[String], timeout: Duration) -> Result<Leader> {
    let mut reasons = Vec::new();
    for node in nodes {
        match leader_via(node, timeout) {
            Ok(leader) => return Ok(leader),
            Err(e) => reasons.push(format!("{node}: {e}")),
        }
    }
    Err(Error::NoLeader(reasons.join("; ")))
}

fn leader_via(node: &str, timeout: Duration) -> Result<Leader> {
    let mut conn = Conn::connect(node, timeout)?;
    let (id, address) = conn.leader()?;
    if address.is_empty() {
        return Err(Error::NoLeader("no leader known".to_string()));
    }
    if address != node {
        conn = Conn::connect(&address, timeout)?;
        let (_, again) = conn.leader()?;
        if again != address {
            return Err(Error::NoLeader(format!(
                "{address} was named leader but names '{again}'"
            )));
        }
    }
    conn.register()?;
    Ok(Leader { conn, id, address })
}

impl Conn {
    /// Connects to `address` (host:port) and sends the version word.
    pub fn connect(address: &str, timeout: Duration) -> Result<Conn> {
        let target = address
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| Error::Protocol(format!("'{address}' resolves to nothing")))?;
        let mut stream = TcpStream::connect_timeout(&target, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.write_all(&VERSION_ONE.to_le_bytes())?;
        Ok(Conn {
            stream,
            address: address.to_string(),
            watch: None,
        })
    }

    /// Watches this node's leadership while a request waits: every `every`
    /// without a byte of the answer, asks the `others` (the cluster's other
    /// nodes) who leads, and once one names another node, gives the request
    /// up with [`Error::NoLeader`] (its fate unknown, as for a cut
    /// connection). A leader that stops answering without closing its
    /// connections (frozen, cut off by the network) is then given up as
    /// soon as the others have elected its successor, not at the answer
    /// timeout, which a slow but live leader needs long.
    pub fn watch_leadership(&mut self, others: Vec<String>, every: Duration) {
        self.watch = Some(Watch { others, every });
    }

    /// The address this connection was made to.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// How long a request may wait for its answer (commits wait for a quorum).
    pub fn set_timeout(&self, timeout: Duration) -> Result<()> {
        self.stream.set_read_timeout(Some(timeout))?;
        Ok(())
    }

    /// The leader this node knows: its id and address, ("" when none).
    pub fn leader(&mut self) -> Result<(u64, String)> {
        let mut r = self.call(Request::new(LEADER).u64(0), NODE)?;
        Ok((r.u64()?, r.text()?))
    }

    /// Registers as a client, as the leader expects before SQL.
    fn register(&mut self) -> Result<()> {
        self.call(Request::new(CLIENT).u64(0), WELCOME)?;
        Ok(())
    }

    /// Opens (creating it if needed) the replicated database `name`.
    pub fn open(&mut self, name: &str) -> Result<u32> {
        let request = Request::new(OPEN).text(name).u64(0).text("volatile");
        let mut r = self.call(request, DB)?;
        r.u32()
    }

    /// Runs `sql` (one or more statements) and returns the last insert id
    /// and the rows changed.
    pub fn exec(&mut self, db: u32, sql: &str, params: &[Value]) -> Result<(u64, u64)> {
        let request = Request::new(EXEC_SQL)
            .u64(u64::from(db))
            .text(sql)
            .params(params)?;
        let mut r = self.call(request, RESULT)?;
        Ok((r.u64()?, r.u64()?))
    }

    /// Runs one statement and returns all its rows.
    pub fn query(&mut self, db: u32, sql: &str, params: &[Value]) -> Result<Rows> {
        let request = Request::new(QUERY_SQL)
            .u64(u64::from(db))
            .text(sql)
            .params(params)?;
        let mut r = self.call(request, ROWS)?;
        let columns = read_columns(&mut r)?;
        let mut rows = Vec::new();
        loop {
            match r.peek_u8() {
                Some(ROWS_DONE) => return Ok(Rows { columns, rows }),
                // A large result comes in parts, each message starting
                // with the columns again.
                Some(ROWS_PART) => {
                    r = self.receive(ROWS)?;
                    read_columns(&mut r)?;
                }
                Some(_) => rows.push(read_row(&mut r, columns.len())?),
                None => return Err(Error::Protocol("rows without their end".to_string())),
            }
        }
    }

    /// Adds a node (as a spare) to the configuration; leader only.
    pub fn add(&mut self, id: u64, address: &str) -> Result<()> {
        self.call(Request::new(ADD).u64(id).text(address), EMPTY)?;
        Ok(())
    }

    /// Gives a member a new role; leader only.
    pub fn assign(&mut self, id: u64, role: Role) -> Result<()> {
        self.call(Request::new(ASSIGN).u64(id).u64(role as u64), EMPTY)?;
        Ok(())
    }

    /// Takes a member out of the configuration; leader only.
    pub fn remove(&mut self, id: u64) -> Result<()> {
        self.call(Request::new(REMOVE).u64(id), EMPTY)?;
        Ok(())
    }

    /// The members of the cluster; leader only.
    pub fn cluster(&mut self) -> Result<Vec<NodeInfo>> {
        let mut r = self.call(Request::new(CLUSTER).u64(1), NODES)?;
        let n = r.u64()?;
        (0..n)
            .map(|_| {
                Ok(NodeInfo {
                    id: r.u64()?,
                    address: r.text()?,
                    role: r.u64()?,
                })
            })
            .collect()
    }

    /// Hands leadership to the voter `id`; leader only.
    pub fn transfer(&mut self, id: u64) -> Result<()> {
        self.call(Request::new(TRANSFER).u64(id), EMPTY)?;
        Ok(())
    }

    fn call(&mut self, request: Request, expected: u8) -> Result<Response> {
        self.stream.write_all(&request.frame())?;
        self.receive(expected)
    }

    /// Reads one response; a failure becomes [`Error::Server`].
    fn receive(&mut self, expected: u8) -> Result<Response> {
        if self.watch.is_some() {
            self.wait_while_leading()?;
        }
        let mut header = [0u8; WORD];
        self.stream.read_exact(&mut header)?;
        let words = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let mut body = vec![0u8; words * WORD];
        self.stream.read_exact(&mut body)?;
        let response = Response::new(header[4], body);
        match response.kind {
            kind if kind == expected => Ok(response),
            FAILURE => Err(failure(response)?),
            other => Err(Error::Protocol(format!(
                "expected a response of type {expected}, got {other}"
            ))),
        }
    }
}

impl Conn {
    /// Waits for the first byte of an answer, at most the read timeout,
    /// asking the other nodes who leads at each `every` that passes
    /// without it.
    fn wait_while_leading(&mut self) -> Result<()> {
        let watch = self.watch.as_ref().expect("called when watching");
        let every = watch.every;
        let original = self.stream.read_timeout()?;
        let bound = original.unwrap_or(Duration::MAX);
        let started = Instant::now();
        self.stream.set_read_timeout(Some(every.min(bound)))?;
        let waited = loop {
            match self.stream.peek(&mut [0u8; 1]) {
                // A byte, or the end of the stream, which the read reports.
                Ok(_) => break Ok(()),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if started.elapsed() >= bound {
                        break Err(Error::Io(e));
                    }
                    if let Some(leader) = self.leader_elsewhere(every) {
                        break Err(Error::NoLeader(format!(
                            "{} has not answered for {} ms and {leader} leads now",
                            self.address,
                            started.elapsed().as_millis()
                        )));
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => break Err(Error::Io(e)),
            }
        };
        self.stream.set_read_timeout(original)?;
        waited
    }

    /// The leader another node names, when it is not this connection's.
    /// Each question is bounded by `timeout`; a node that does not answer
    /// names nobody.
    fn leader_elsewhere(&self, timeout: Duration) -> Option<String> {
        let watch = self.watch.as_ref()?;
        watch.others.iter().find_map(|node| {
            let (_, leader) = Conn::connect(node, timeout).ok()?.leader().ok()?;
            (!leader.is_empty() && leader != self.address).then_some(leader)
        })
    }
}

/// A failure's code and message. dqlite 1.11 writes a failing query's
/// failure after the column count and names it had already put in the
/// response: read plainly, the "message" would be the first column's name
/// and the function's error text would be lost. The failure is the end of
/// the body, so when a plain reading leaves bytes over, skip the columns.
fn failure(mut response: Response) -> Result<Error> {
    let body = response.body.clone();
    let (code, message) = (response.u64()?, response.text()?);
    if response.is_consumed() {
        return Ok(Error::Server { code, message });
    }
    let mut response = Response::new(FAILURE, body);
    let columns = response.u64()?;
    for _ in 0..columns {
        response.text()?;
    }
    Ok(Error::Server {
        code: response.u64()?,
        message: response.text()?,
    })
}

/// The column count and names that open every message of rows.
fn read_columns(r: &mut Response) -> Result<Vec<String>> {
    let count = r.u64()? as usize;
    let mut columns = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        columns.push(r.text()?);
    }
    Ok(columns)
}

/// One row: a header of 4-bit type codes (two per byte, padded to a word),
/// then the values.
fn read_row(r: &mut Response, columns: usize) -> Result<Vec<Value>> {
    let header_words = (columns * 4).div_ceil(WORD * 8);
    let mut types = Vec::with_capacity(columns);
    for i in 0..header_words * WORD {
        let byte = r.u8()?;
        for nibble in [byte & 0x0f, byte >> 4] {
            if types.len() < columns && i * 2 < columns {
                types.push(nibble);
            }
        }
    }
    types.iter().map(|&code| r.value(code)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::thread;

    fn words(parts: &[&[u8]]) -> Vec<u8> {
        let mut body = Vec::new();
        for part in parts {
            body.extend_from_slice(part);
            while body.len() % WORD != 0 {
                body.push(0);
            }
        }
        body
    }

    /// A node on loopback that reads the version word and each request,
    /// and answers a LEADER request by naming `leader` (counting them in
    /// `asked`) and any other request after `answer_after`, or never when
    /// it is `None`: a leader frozen with its connections open.
    fn fake_node(
        leader: String,
        answer_after: Option<Duration>,
        asked: Arc<AtomicUsize>,
    ) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        thread::spawn(move || {
            // Bounded: no test makes more than a few dozen connections.
            for stream in listener.incoming().take(64) {
                let Ok(mut stream) = stream else { return };
                let (leader, asked) = (leader.clone(), asked.clone());
                thread::spawn(move || {
                    let mut version = [0u8; WORD];
                    if stream.read_exact(&mut version).is_err() {
                        return;
                    }
                    let mut header = [0u8; WORD];
                    while stream.read_exact(&mut header).is_ok() {
                        let words = u32::from_le_bytes(header[..4].try_into().unwrap()) as usize;
                        let mut body = vec![0u8; words * WORD];
                        if stream.read_exact(&mut body).is_err() {
                            return;
                        }
                        let answer = if header[4] == LEADER {
                            asked.fetch_add(1, Ordering::SeqCst);
                            Request::new(NODE).u64(7).text(&leader)
                        } else {
                            let Some(delay) = answer_after else {
                                // Frozen: hold the connection, answer nothing.
                                while stream.read(&mut header).is_ok_and(|n| n > 0) {}
                                return;
                            };
                            thread::sleep(delay);
                            Request::new(EMPTY)
                        };
                        if stream.write_all(&answer.frame()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        address
    }

    /// A connection to `node`, its read timeout `timeout`, watching
    /// `others` every 50 ms.
    fn watched(node: &str, others: Vec<String>, timeout: Duration) -> Conn {
        let mut conn = Conn::connect(node, Duration::from_secs(1)).unwrap();
        conn.set_timeout(timeout).unwrap();
        conn.watch_leadership(others, Duration::from_millis(50));
        conn
    }

    /// A frozen leader that the other nodes still name is given up at the
    /// answer timeout, not before, and not never: the watch asks them at
    /// each interval meanwhile, and a node that is down names nobody.
    #[test]
    fn a_frozen_leader_the_others_still_name_is_given_up_at_the_answer_timeout() {
        let asked = Arc::new(AtomicUsize::new(0));
        let down = TcpListener::bind("127.0.0.1:0").unwrap();
        let down_address = down.local_addr().unwrap().to_string();
        drop(down);
        let frozen = fake_node(String::new(), None, Arc::default());
        let other = fake_node(frozen.clone(), None, asked.clone());
        let timeout = Duration::from_millis(400);
        let mut conn = watched(&frozen, vec![down_address, other], timeout);
        let started = Instant::now();
        let error = conn.transfer(2).unwrap_err();
        let waited = started.elapsed();
        let Error::Io(e) = &error else {
            panic!("expected the answer timeout, got {error}");
        };
        assert!(
            matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "{e}"
        );
        assert!(
            waited >= timeout,
            "gave up after {waited:?}, before {timeout:?}"
        );
        assert!(
            asked.load(Ordering::SeqCst) >= 2,
            "the other node was asked {asked:?} times"
        );
        // The watch puts the read timeout back: the next request is bounded
        // by the same 400 ms, not by the 50 ms interval.
        assert_eq!(conn.stream.read_timeout().unwrap(), Some(timeout));
    }

    #[test]
    fn a_frozen_leader_is_given_up_once_another_node_names_its_successor() {
        let asked = Arc::new(AtomicUsize::new(0));
        let frozen = fake_node(String::new(), None, Arc::default());
        let other = fake_node("127.0.0.1:9003".to_string(), None, asked.clone());
        let timeout = Duration::from_secs(5);
        let mut conn = watched(&frozen, vec![other], timeout);
        let started = Instant::now();
        let error = conn.transfer(2).unwrap_err();
        let Error::NoLeader(detail) = &error else {
            panic!("expected the lost leadership, got {error}");
        };
        assert!(
            detail.starts_with(&format!("{} has not answered for ", conn.address()))
                && detail.ends_with(" ms and 127.0.0.1:9003 leads now"),
            "{detail}"
        );
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        assert!(started.elapsed() < timeout, "{:?}", started.elapsed());
    }

    /// A slow leader that the others still name gets its answer.
    #[test]
    fn a_slow_leader_the_others_still_name_is_waited_for() {
        let asked = Arc::new(AtomicUsize::new(0));
        let slow = fake_node(
            String::new(),
            Some(Duration::from_millis(200)),
            Arc::default(),
        );
        let other = fake_node(slow.clone(), None, asked.clone());
        let mut conn = watched(&slow, vec![other], Duration::from_secs(5));
        conn.transfer(2).unwrap();
        assert!(asked.load(Ordering::SeqCst) >= 1);
        assert_eq!(
            conn.stream.read_timeout().unwrap(),
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn a_plain_failure_reads_its_code_and_message() {
        let body = words(&[&1u64.to_le_bytes(), b"near \"SELEC\": syntax error\0"]);
        let Error::Server { code, message } = failure(Response::new(FAILURE, body)).unwrap() else {
            panic!("not a server error");
        };
        assert_eq!(
            (code, message.as_str()),
            (1, "near \"SELEC\": syntax error")
        );
    }

    /// dqlite 1.11 puts a failing query's columns before its failure: the
    /// message read must be the function's text, not the column's name.
    #[test]
    fn a_failing_querys_error_text_is_read_past_its_columns() {
        let body = words(&[
            &1u64.to_le_bytes(),
            b"onboarding_step('onb_x','business','{}')\0",
            &1u64.to_le_bytes(),
            b"onboarding_step: not_found: session 'onb_x' does not exist\0",
        ]);
        let Error::Server { code, message } = failure(Response::new(FAILURE, body)).unwrap() else {
            panic!("not a server error");
        };
        assert_eq!(code, 1);
        assert_eq!(
            message,
            "onboarding_step: not_found: session 'onb_x' does not exist"
        );
    }

    #[test]
    fn a_row_reads_its_types_then_its_values() {
        // Three columns: TEXT, INTEGER, NULL (types 3, 1, 5 as nibbles).
        let body = words(&[
            &3u64.to_le_bytes(),
            b"a\0",
            b"b\0",
            b"c\0",
            &[0x13, 0x05],
            b"{}\0",
            &42u64.to_le_bytes(),
            &0u64.to_le_bytes(),
            &[ROWS_DONE; 8],
        ]);
        let mut r = Response::new(ROWS, body);
        let columns = read_columns(&mut r).unwrap();
        assert_eq!(columns, ["a", "b", "c"]);
        let row = read_row(&mut r, columns.len()).unwrap();
        assert_eq!(
            row,
            [Value::Text("{}".into()), Value::Integer(42), Value::Null]
        );
        assert_eq!(r.peek_u8(), Some(ROWS_DONE));
    }
}
