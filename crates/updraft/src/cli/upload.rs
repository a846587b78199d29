//! The release upload's transport: one streamed `multipart/form-data` POST over HTTP/1.1 that
//! reads the server's answer while it writes.
//!
//! The server refuses an upload as early as it can (an untrusted signature is known from the
//! envelope part, before the image is read; a too-long image as soon as it passes the signed
//! size), answers, and closes the connection. A client that only reads after writing the whole
//! body then sees a broken pipe or a reset instead of the refusal. Here a reader thread takes
//! the answer off the socket as soon as it arrives, the writer stops when an answer is there or
//! the socket fails, and the answer (status and JSON error) is what the user sees.
//!
//! Plain `http://` only (the CLI has no TLS); the answer is bounded to [`MAX_ANSWER`] bytes and
//! parsed with `httparse`.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};

/// Largest answer read (a release's JSON is a few hundred bytes).
pub const MAX_ANSWER: usize = 1 << 20;

/// Write size of the body.
const CHUNK: usize = 64 * 1024;

/// An HTTP answer: status code and body text.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The body (de-chunked), lossily decoded as UTF-8.
    pub body: String,
}

/// One part of the form.
pub enum Part<'a> {
    /// A part held in memory.
    Bytes {
        /// Field name.
        name: &'a str,
        /// Content.
        data: &'a [u8],
    },
    /// A file part streamed from a reader of known length.
    Stream {
        /// Field name.
        name: &'a str,
        /// File name sent with it.
        file_name: &'a str,
        /// Its length in bytes.
        len: u64,
        /// The content.
        reader: Box<dyn Read + 'a>,
    },
}

fn part_head(boundary: &str, part: &Part<'_>) -> String {
    match part {
        Part::Bytes { name, .. } => format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"\r\n\r\n",
            quoted(name)
        ),
        Part::Stream {
            name, file_name, ..
        } => format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n",
            quoted(name),
            quoted(file_name)
        ),
    }
}

/// A header parameter value without quotes, backslashes or line breaks.
fn quoted(s: &str) -> String {
    s.chars()
        .map(|c| {
            if matches!(c, '"' | '\\' | '\r' | '\n') {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// POST `parts` as `multipart/form-data` to `url` (`http://host[:port]/path?query`) with the
/// bearer `token`, and return the server's answer, even one sent before the body was complete.
pub fn post_multipart(url: &str, token: &str, parts: Vec<Part<'_>>) -> anyhow::Result<Answer> {
    let url = reqwest::Url::parse(url).with_context(|| format!("bad server URL {url}"))?;
    if url.scheme() != "http" {
        bail!(
            "the upload speaks plain http:// only, not {}://",
            url.scheme()
        );
    }
    let host = url.host_str().context("the server URL has no host")?;
    let port = url.port_or_known_default().unwrap_or(80);
    let addr = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}"))?
        .next()
        .with_context(|| format!("{host} resolves to no address"))?;
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;

    let mut random = [0u8; 12];
    boundary_bytes(&mut random);
    let boundary = format!("updraft-{}", hex::encode(random));
    let mut length: u64 = 0;
    for p in &parts {
        length += part_head(&boundary, p).len() as u64 + 2;
        length += match p {
            Part::Bytes { data, .. } => data.len() as u64,
            Part::Stream { len, .. } => *len,
        };
    }
    let trailer = format!("--{boundary}--\r\n");
    length += trailer.len() as u64;
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let host_header = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let head = format!(
        "POST {target} HTTP/1.1\r\nHost: {host_header}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {length}\r\n\
         Connection: close\r\nUser-Agent: updraft/{}\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );

    let answered = Arc::new(AtomicBool::new(false));
    let reader = {
        let mut stream = stream.try_clone().context("cloning the socket")?;
        let answered = answered.clone();
        std::thread::spawn(move || -> std::io::Result<Vec<u8>> {
            let mut got = Vec::new();
            let mut buf = [0u8; 8192];
            loop {
                let n = match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    // A reset after the answer arrived: keep what was read.
                    Err(_) if !got.is_empty() => break,
                    Err(e) => return Err(e),
                };
                got.extend_from_slice(&buf[..n]);
                if complete(&got) || got.len() >= MAX_ANSWER {
                    break;
                }
                if head_end(&got).is_some() {
                    answered.store(true, Ordering::SeqCst);
                }
            }
            answered.store(true, Ordering::SeqCst);
            // A writer blocked on a server that answered and stopped reading gets an error now.
            let _ = stream.shutdown(Shutdown::Both);
            Ok(got)
        })
    };

    let written = write_body(&mut stream, &head, &boundary, parts, &trailer, &answered);
    if written.is_err() {
        // The server stopped reading; whatever it answered is on its way or already here.
        let _ = stream.shutdown(Shutdown::Write);
    }
    let got = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the answer reader panicked"))?;
    let got = match (got, written) {
        (Ok(got), _) if !got.is_empty() => got,
        (_, Err(e)) => return Err(e).context("sending the upload"),
        (Err(e), Ok(())) => return Err(e).context("reading the server's answer"),
        (Ok(_), Ok(())) => bail!("the server closed the connection without an answer"),
    };
    parse_answer(&got)
}

fn boundary_bytes(buf: &mut [u8]) {
    // Uniqueness within one body is all a boundary needs; time and pid suffice without a RNG.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
        ^ (u128::from(std::process::id()) << 64);
    let digest = <sha2::Sha256 as sha2::Digest>::digest(seed.to_le_bytes());
    for (b, d) in buf.iter_mut().zip(digest.iter()) {
        *b = *d;
    }
}

fn write_body(
    stream: &mut TcpStream,
    head: &str,
    boundary: &str,
    parts: Vec<Part<'_>>,
    trailer: &str,
    answered: &AtomicBool,
) -> anyhow::Result<()> {
    stream.write_all(head.as_bytes())?;
    let mut buf = vec![0u8; CHUNK];
    for part in parts {
        if answered.load(Ordering::SeqCst) {
            return Ok(());
        }
        stream.write_all(part_head(boundary, &part).as_bytes())?;
        match part {
            Part::Bytes { data, .. } => stream.write_all(data)?,
            Part::Stream {
                mut reader, len, ..
            } => {
                let mut left = len;
                while left > 0 {
                    if answered.load(Ordering::SeqCst) {
                        return Ok(());
                    }
                    let want = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
                    let n = reader.read(&mut buf[..want])?;
                    if n == 0 {
                        bail!("the file ended {left} bytes early");
                    }
                    stream.write_all(&buf[..n])?;
                    left -= n as u64;
                }
            }
        }
        stream.write_all(b"\r\n")?;
    }
    stream.write_all(trailer.as_bytes())?;
    stream.flush()?;
    Ok(())
}

/// Where the head ends (after the blank line), if it has arrived.
fn head_end(got: &[u8]) -> Option<usize> {
    got.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Whether `got` holds a whole answer with a `Content-Length` body.
fn complete(got: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(got) {
        Ok(httparse::Status::Complete(n)) => {
            content_length(response.headers).is_some_and(|len| got.len().saturating_sub(n) >= len)
        }
        _ => false,
    }
}

fn content_length(headers: &[httparse::Header<'_>]) -> Option<usize> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Parse an HTTP/1.1 answer: status, then the body by `Content-Length`, chunked, or to the end.
pub fn parse_answer(got: &[u8]) -> anyhow::Result<Answer> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let start = match response.parse(got) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => bail!("the server's answer ended inside its head"),
        Err(e) => bail!("the server's answer is not HTTP: {e}"),
    };
    let status = response.code.context("the server's answer has no status")?;
    let rest = got.get(start..).unwrap_or_default();
    let chunked = response.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            && std::str::from_utf8(h.value)
                .is_ok_and(|v| v.to_ascii_lowercase().contains("chunked"))
    });
    let body = if chunked {
        dechunk(rest)
    } else {
        match content_length(response.headers) {
            Some(len) => rest.get(..len).unwrap_or(rest).to_vec(),
            None => rest.to_vec(),
        }
    };
    Ok(Answer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// The data of a chunked body, as far as it is well formed.
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Ok(httparse::Status::Complete((used, size))) = httparse::parse_chunk_size(rest) {
        let Ok(size) = usize::try_from(size) else {
            break;
        };
        let Some(data) = rest.get(used..).and_then(|r| r.get(..size)) else {
            break;
        };
        if size == 0 {
            break;
        }
        out.extend_from_slice(data);
        rest = rest.get(used + size..).unwrap_or_default();
        rest = rest.strip_prefix(b"\r\n").unwrap_or(rest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_by_length_chunked_or_to_the_end() {
        let by_length = b"HTTP/1.1 422 Unprocessable Entity\r\ncontent-type: application/json\r\ncontent-length: 7\r\n\r\n{\"a\":1}trailing";
        assert_eq!(
            parse_answer(by_length).unwrap(),
            Answer {
                status: 422,
                body: "{\"a\":1}".into()
            }
        );
        let chunked = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_answer(chunked).unwrap().body, "abcde");
        let to_end = b"HTTP/1.1 500 Internal Server Error\r\n\r\noops";
        assert_eq!(parse_answer(to_end).unwrap().body, "oops");
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\nX: y").is_err());
        assert!(parse_answer(b"\x00\x01garbage\r\n\r\n").is_err());
        assert!(complete(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"));
        assert!(!complete(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok"));
    }

    #[test]
    fn truncated_or_hostile_chunks_never_panic() {
        for input in [
            &b"5\r\nab"[..],
            b"ffffffffffffffffff\r\n",
            b"zz\r\n",
            b"",
            b"2\r\nabXX1\r\nc\r\n0\r\n\r\n",
        ] {
            let _ = dechunk(input);
        }
        assert_eq!(dechunk(b"2\r\nab\r\n1\r\nc\r\n0\r\n\r\n"), b"abc");
    }

    #[test]
    fn header_parameters_cannot_break_out_of_their_quotes() {
        assert_eq!(quoted("a\"b\r\nc\\d"), "a_b__c_d");
    }
}
