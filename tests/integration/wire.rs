//! A minimal PostgreSQL wire client for what real clients cannot be made to do: send
//! garbage, count sessions exactly, read the SQLSTATE of a connection-time error.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A backend message: type byte and body.
pub type Message = (u8, Vec<u8>);

/// Opens a TCP connection to the PostgreSQL port (10 s read timeout).
pub fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// The StartupMessage for `user` on database kubearmor, protocol 3.0.
pub fn startup_message(user: &str, options: &[(&str, &str)]) -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    let params = [("user", user), ("database", "kubearmor")];
    for (k, v) in params.iter().chain(options) {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    msg.extend(body);
    msg
}

/// Reads one message; `None` when the server closed the connection.
pub fn read_message(stream: &mut TcpStream) -> Option<Message> {
    let mut head = [0u8; 5];
    match stream.read_exact(&mut head) {
        Ok(()) => {}
        Err(e)
            if e.kind() == ErrorKind::UnexpectedEof || e.kind() == ErrorKind::ConnectionReset =>
        {
            return None;
        }
        Err(e) => panic!("reading from the server: {e}"),
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut body = vec![0u8; len.saturating_sub(4)];
    stream.read_exact(&mut body).ok()?;
    Some((head[0], body))
}

/// The fields of an ErrorResponse, by field type (`C` SQLSTATE, `M` message, `S` severity).
pub fn error_fields(body: &[u8]) -> HashMap<char, String> {
    body.split(|b| *b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| (f[0] as char, String::from_utf8_lossy(&f[1..]).into_owned()))
        .collect()
}

/// Starts a trusted session as `user`: `Ok` once ReadyForQuery arrives, `Err` with the
/// error fields if the server refuses.
pub fn start_session(
    port: u16,
    user: &str,
    options: &[(&str, &str)],
) -> Result<TcpStream, HashMap<char, String>> {
    let mut stream = connect(port);
    stream.write_all(&startup_message(user, options)).unwrap();
    loop {
        match read_message(&mut stream) {
            Some((b'Z', _)) => return Ok(stream),
            Some((b'E', body)) => return Err(error_fields(&body)),
            Some(_) => continue,
            None => panic!("server closed the connection during startup"),
        }
    }
}

/// Runs `sql` with the simple protocol; returns every message up to ReadyForQuery.
pub fn simple_query(stream: &mut TcpStream, sql: &str) -> Vec<Message> {
    let mut msg = vec![b'Q'];
    msg.extend(((sql.len() + 5) as u32).to_be_bytes());
    msg.extend(sql.as_bytes());
    msg.push(0);
    stream.write_all(&msg).unwrap();
    let mut out = Vec::new();
    while let Some(m) = read_message(stream) {
        let done = m.0 == b'Z';
        out.push(m);
        if done {
            break;
        }
    }
    out
}

/// The text of the first column of every DataRow.
pub fn first_column(messages: &[Message]) -> Vec<String> {
    messages
        .iter()
        .filter(|(t, _)| *t == b'D')
        .map(|(_, body)| {
            let len = i32::from_be_bytes([body[2], body[3], body[4], body[5]]);
            String::from_utf8_lossy(&body[6..6 + len.max(0) as usize]).into_owned()
        })
        .collect()
}

/// Reads until the server closes the connection; returns the messages it sent first.
pub fn read_until_closed(stream: &mut TcpStream) -> Vec<Message> {
    let mut out = Vec::new();
    while let Some(m) = read_message(stream) {
        out.push(m);
        assert!(out.len() < 10_000, "the server kept talking");
    }
    out
}

/// Logs in as `user` with SCRAM-SHA-256 but sends a proof of all zeros; returns the
/// error fields the server answers with.
pub fn scram_with_wrong_proof(port: u16, user: &str) -> HashMap<char, String> {
    let mut stream = connect(port);
    stream.write_all(&startup_message(user, &[])).unwrap();
    let (kind, body) = read_message(&mut stream).unwrap();
    assert_eq!(kind, b'R');
    assert_eq!(&body[..4], &10u32.to_be_bytes(), "not AuthenticationSASL");
    assert!(String::from_utf8_lossy(&body[4..]).contains("SCRAM-SHA-256"));

    let client_first = b"n,,n=,r=clientnonce";
    let mut msg = vec![b'p'];
    let len = 4 + "SCRAM-SHA-256".len() + 1 + 4 + client_first.len();
    msg.extend((len as u32).to_be_bytes());
    msg.extend(b"SCRAM-SHA-256\0");
    msg.extend((client_first.len() as u32).to_be_bytes());
    msg.extend(client_first);
    stream.write_all(&msg).unwrap();

    let (kind, body) = read_message(&mut stream).unwrap();
    assert_eq!(kind, b'R');
    assert_eq!(
        &body[..4],
        &11u32.to_be_bytes(),
        "not AuthenticationSASLContinue"
    );
    let server_first = String::from_utf8_lossy(&body[4..]).into_owned();
    let nonce = server_first
        .split(',')
        .find_map(|a| a.strip_prefix("r="))
        .unwrap();
    assert!(nonce.starts_with("clientnonce"), "{server_first}");
    let client_final = format!("c=biws,r={nonce},p={}", "A".repeat(43) + "=");
    let mut msg = vec![b'p'];
    msg.extend(((4 + client_final.len()) as u32).to_be_bytes());
    msg.extend(client_final.as_bytes());
    stream.write_all(&msg).unwrap();

    match read_message(&mut stream) {
        Some((b'E', body)) => error_fields(&body),
        other => panic!("expected an error, got {other:?}"),
    }
}
