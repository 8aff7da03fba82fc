//! The messages of `/cnode/rpc/1` and their binary encoding.
//!
//! Every message starts with a version byte (1) and a tag byte; integers are
//! little-endian; strings are UTF-8 with a length prefix. Decoders check
//! every length against the caps below before they copy anything, and never
//! panic. The layout and test vectors are in `docs/protocol.md`; the tests
//! below read the vectors.

use cnode_plugins::{PluginId, Request, Response};

/// An HTTP header: (name, value).
type Header = (String, String);

/// The wire version this code speaks.
pub const VERSION: u8 = 1;
/// The longest method name.
pub const MAX_METHOD: usize = 16;
/// The longest path (below the service prefix).
pub const MAX_PATH: usize = 2048;
/// The longest query string.
pub const MAX_QUERY: usize = 4096;
/// The most headers in a request.
pub const MAX_REQUEST_HEADERS: usize = 16;
/// The most headers in an answer.
pub const MAX_RESPONSE_HEADERS: usize = 32;
/// The longest header name.
pub const MAX_HEADER_NAME: usize = 64;
/// The longest header value.
pub const MAX_HEADER_VALUE: usize = 1024;
/// The largest request body (the HTTP API's own limit).
pub const MAX_REQUEST_BODY: usize = 1 << 20;
/// The largest answer body.
pub const MAX_RESPONSE_BODY: usize = 4 << 20;
/// The longest error message.
pub const MAX_MESSAGE: usize = 1024;
/// Room for everything but the body: 128 + 16 + 2048 + 4096 + 32 × 1091
/// bytes of fields and their lengths fit in it.
pub const HEADROOM: usize = 64 << 10;
/// The largest request message.
pub const MAX_REQUEST: usize = MAX_REQUEST_BODY + HEADROOM;
/// The largest response message.
pub const MAX_RESPONSE: usize = MAX_RESPONSE_BODY + HEADROOM;

/// A service call for a node that runs the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcRequest {
    /// The service (plugin) id.
    pub service: PluginId,
    /// What the plugin's `handle` gets.
    pub request: Request,
}

/// Why a serving node did not run the call, or how the call failed there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The node does not have the service (ask another).
    NotServed = 1,
    /// Installed there but disabled or not loaded (ask another).
    Disabled = 2,
    /// Every slot for forwarded calls, or the plugin host, is busy (ask another).
    Busy = 3,
    /// The plugin ran past its time limit or fuel.
    TimeLimit = 4,
    /// The plugin trapped, hit its memory cap or could not be instantiated.
    Trap = 5,
    /// The request is over the serving node's limits.
    TooLarge = 6,
    /// The asking node sent too many calls (ask another, or later).
    RateLimited = 7,
    /// The path is not one of the plugin's routes.
    NoRoute = 8,
    /// The request did not decode.
    BadRequest = 9,
    /// The plugin's answer is over the protocol's limits.
    AnswerTooLarge = 10,
}

impl ErrorCode {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::NotServed,
            2 => Self::Disabled,
            3 => Self::Busy,
            4 => Self::TimeLimit,
            5 => Self::Trap,
            6 => Self::TooLarge,
            7 => Self::RateLimited,
            8 => Self::NoRoute,
            9 => Self::BadRequest,
            10 => Self::AnswerTooLarge,
            _ => return None,
        })
    }

    /// The name used in logs and errors (`not-served`, `busy`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::NotServed => "not-served",
            Self::Disabled => "disabled",
            Self::Busy => "busy",
            Self::TimeLimit => "time-limit",
            Self::Trap => "trap",
            Self::TooLarge => "too-large",
            Self::RateLimited => "rate-limited",
            Self::NoRoute => "no-route",
            Self::BadRequest => "bad-request",
            Self::AnswerTooLarge => "answer-too-large",
        }
    }

    /// Whether the answer settles the call: the service ran (or refused the
    /// request itself) there, so asking another node would not help.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::TimeLimit | Self::Trap | Self::TooLarge | Self::NoRoute | Self::AnswerTooLarge
        )
    }
}

/// The answer to an [`RpcRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcResponse {
    /// The plugin's answer (any status, 5xx included).
    Answer(Response),
    /// No answer from the plugin.
    Error {
        /// What happened.
        code: ErrorCode,
        /// A short human-readable reason.
        message: String,
    },
}

pub use cnode_types::wire::DecodeError;
use cnode_types::wire::Reader;

/// A request that cannot be sent: a field is over its cap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the request's {field} is {size} bytes; a forwarded call allows at most {max}")]
pub struct TooLarge {
    /// Which field.
    pub field: &'static str,
    /// Its size.
    pub size: usize,
    /// The cap.
    pub max: usize,
}

fn check(field: &'static str, size: usize, max: usize) -> Result<(), TooLarge> {
    if size > max {
        Err(TooLarge { field, size, max })
    } else {
        Ok(())
    }
}

/// Whether a header fits the wire's caps (name 1–64 bytes, value ≤ 1 KiB).
fn header_fits((name, value): &Header) -> bool {
    !name.is_empty() && name.len() <= MAX_HEADER_NAME && value.len() <= MAX_HEADER_VALUE
}

impl RpcRequest {
    /// A request for `service`, refused when the method, path, query or
    /// body is over its cap. Headers that do not fit (over 16, a name over
    /// 64 bytes, a value over 1 KiB) are left out.
    pub fn new(service: PluginId, mut request: Request) -> Result<Self, TooLarge> {
        check("method", request.method.len(), MAX_METHOD)?;
        check("path", request.path.len(), MAX_PATH)?;
        check("query", request.query.len(), MAX_QUERY)?;
        check("body", request.body.len(), MAX_REQUEST_BODY)?;
        request.headers.retain(header_fits);
        request.headers.truncate(MAX_REQUEST_HEADERS);
        Ok(Self { service, request })
    }

    /// The wire bytes (the fields must be within the caps, as
    /// [`RpcRequest::new`] and [`RpcRequest::decode`] make sure).
    pub fn encode(&self) -> Vec<u8> {
        let r = &self.request;
        let mut out = Vec::with_capacity(64 + r.path.len() + r.query.len() + r.body.len());
        out.extend_from_slice(&[VERSION, 1]);
        put_u8_str(&mut out, self.service.as_str());
        put_u8_str(&mut out, &r.method);
        put_u16_str(&mut out, &r.path);
        put_u16_str(&mut out, &r.query);
        put_headers(&mut out, &r.headers, MAX_REQUEST_HEADERS);
        out.extend_from_slice(&(r.body.len() as u32).to_le_bytes());
        out.extend_from_slice(&r.body);
        out
    }

    /// Parses and validates a request.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_REQUEST {
            return Err(DecodeError::Oversized(bytes.len()));
        }
        let mut r = Reader::new(bytes);
        match header(&mut r)? {
            1 => {
                let service = u8_str(&mut r)?;
                let service: PluginId = service
                    .parse()
                    .map_err(|_| DecodeError::Invalid("service id"))?;
                let method = u8_str(&mut r)?;
                if method.is_empty()
                    || method.len() > MAX_METHOD
                    || !method.bytes().all(|b| b.is_ascii_uppercase())
                {
                    return Err(DecodeError::Invalid("method"));
                }
                let path = u16_str(&mut r, MAX_PATH)?;
                if !path.starts_with('/') {
                    return Err(DecodeError::Invalid("path must start with /"));
                }
                let query = u16_str(&mut r, MAX_QUERY)?;
                let headers = headers(&mut r, MAX_REQUEST_HEADERS)?;
                let n = r.u32()? as usize;
                if n > MAX_REQUEST_BODY {
                    return Err(DecodeError::Invalid("body over the limit"));
                }
                let body = r.take(n)?.to_vec();
                r.end()?;
                Ok(Self {
                    service,
                    request: Request {
                        method,
                        path,
                        query,
                        headers,
                        body,
                    },
                })
            }
            t => Err(DecodeError::Tag(t)),
        }
    }
}

impl RpcResponse {
    /// An error answer (the message is cut to 1 KiB at a character boundary).
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.len() > MAX_MESSAGE {
            let mut end = MAX_MESSAGE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        Self::Error { code, message }
    }

    /// The plugin's answer made to fit: a body over 4 MiB becomes an
    /// [`ErrorCode::AnswerTooLarge`] error; headers that do not fit are left
    /// out; a status outside 100–599 becomes 500.
    pub fn answer(mut response: Response) -> Self {
        if response.body.len() > MAX_RESPONSE_BODY {
            return Self::error(
                ErrorCode::AnswerTooLarge,
                format!(
                    "the plugin answered {} bytes; a forwarded answer allows at most {MAX_RESPONSE_BODY}",
                    response.body.len()
                ),
            );
        }
        if !(100..=599).contains(&response.status) {
            response.status = 500;
        }
        response.headers.retain(header_fits);
        response.headers.truncate(MAX_RESPONSE_HEADERS);
        Self::Answer(response)
    }

    /// The wire bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        match self {
            Self::Answer(r) => {
                out.reserve(16 + r.body.len());
                out.push(1);
                out.extend_from_slice(&r.status.to_le_bytes());
                put_headers(&mut out, &r.headers, MAX_RESPONSE_HEADERS);
                out.extend_from_slice(&(r.body.len() as u32).to_le_bytes());
                out.extend_from_slice(&r.body);
            }
            Self::Error { code, message } => {
                out.push(2);
                out.push(*code as u8);
                put_u16_str(&mut out, message);
            }
        }
        out
    }

    /// Parses and validates a response.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_RESPONSE {
            return Err(DecodeError::Oversized(bytes.len()));
        }
        let mut r = Reader::new(bytes);
        match header(&mut r)? {
            1 => {
                let status = r.u16()?;
                if !(100..=599).contains(&status) {
                    return Err(DecodeError::Invalid("status"));
                }
                let headers = headers(&mut r, MAX_RESPONSE_HEADERS)?;
                let n = r.u32()? as usize;
                if n > MAX_RESPONSE_BODY {
                    return Err(DecodeError::Invalid("body over the limit"));
                }
                let body = r.take(n)?.to_vec();
                r.end()?;
                Ok(Self::Answer(Response {
                    status,
                    headers,
                    body,
                }))
            }
            2 => {
                let code = ErrorCode::from_u8(r.u8()?).ok_or(DecodeError::Invalid("error code"))?;
                let message = u16_str(&mut r, MAX_MESSAGE)?;
                r.end()?;
                Ok(Self::Error { code, message })
            }
            t => Err(DecodeError::Tag(t)),
        }
    }
}

fn put_u8_str(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(u8::MAX as usize)];
    out.push(b.len() as u8);
    out.extend_from_slice(b);
}

fn put_u16_str(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(b.len() as u16).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_headers(out: &mut Vec<u8>, headers: &[Header], max: usize) {
    let fit: Vec<&Header> = headers
        .iter()
        .filter(|h| header_fits(h))
        .take(max)
        .collect();
    out.push(fit.len() as u8);
    for (name, value) in fit {
        put_u8_str(out, name);
        put_u16_str(out, value);
    }
}

fn header(r: &mut Reader<'_>) -> Result<u8, DecodeError> {
    r.header(VERSION)
}

fn u8_str(r: &mut Reader<'_>) -> Result<String, DecodeError> {
    let n = r.u8()? as usize;
    r.utf8(n)
}

fn u16_str(r: &mut Reader<'_>, max: usize) -> Result<String, DecodeError> {
    let n = r.u16()? as usize;
    if n > max {
        return Err(DecodeError::Invalid("string over the limit"));
    }
    r.utf8(n)
}

fn headers(r: &mut Reader<'_>, max: usize) -> Result<Vec<Header>, DecodeError> {
    let n = r.u8()? as usize;
    if n > max {
        return Err(DecodeError::Invalid("too many headers"));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let name = u8_str(r)?;
        if name.is_empty() || name.len() > MAX_HEADER_NAME {
            return Err(DecodeError::Invalid("header name"));
        }
        let value = u16_str(r, MAX_HEADER_VALUE)?;
        out.push((name, value));
    }
    Ok(out)
}

/// The fuzz property: decoding arbitrary bytes never panics, and a message
/// that decodes re-encodes to exactly the same bytes (one encoding per message).
pub fn fuzz_check(data: &[u8]) {
    if let Ok(r) = RpcRequest::decode(data) {
        assert_eq!(r.encode(), data, "request re-encodes differently");
    }
    if let Ok(r) = RpcResponse::decode(data) {
        assert_eq!(r.encode(), data, "response re-encodes differently");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn events_request() -> RpcRequest {
        RpcRequest::new(
            "org.cnode.events".parse().unwrap(),
            Request {
                method: "GET".into(),
                path: "/".into(),
                query: "region=w5q6".into(),
                headers: vec![("accept".into(), "application/json".into())],
                body: Vec::new(),
            },
        )
        .unwrap()
    }

    #[test]
    fn protocol_md_test_vectors() {
        let v = crate::protocol_md_vectors("rpc-");
        let req = events_request();
        assert_eq!(hex::encode(req.encode()), v["req-call"]);
        assert_eq!(
            RpcRequest::decode(&hex::decode(&v["req-call"]).unwrap()).unwrap(),
            req
        );
        let answer = RpcResponse::answer(Response {
            status: 200,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: b"hi".to_vec(),
        });
        assert_eq!(hex::encode(answer.encode()), v["resp-answer"]);
        assert_eq!(
            RpcResponse::decode(&hex::decode(&v["resp-answer"]).unwrap()).unwrap(),
            answer
        );
        let err = RpcResponse::error(ErrorCode::NotServed, "not served");
        assert_eq!(hex::encode(err.encode()), v["resp-not-served"]);
        assert_eq!(
            RpcResponse::decode(&hex::decode(&v["resp-not-served"]).unwrap()).unwrap(),
            err
        );
    }

    #[test]
    fn round_trips() {
        let req = RpcRequest::new(
            "org.cnode.board".parse().unwrap(),
            Request {
                method: "POST".into(),
                path: "/notices".into(),
                query: String::new(),
                headers: vec![("content-type".into(), "application/json".into())],
                body: br#"{"title":"Water off"}"#.to_vec(),
            },
        )
        .unwrap();
        assert_eq!(RpcRequest::decode(&req.encode()).unwrap(), req);
        for code in 1..=10u8 {
            let code = ErrorCode::from_u8(code).unwrap();
            let e = RpcResponse::error(code, "ü".repeat(600));
            let RpcResponse::Error { message, .. } = &e else {
                unreachable!()
            };
            assert!(message.len() <= MAX_MESSAGE);
            assert_eq!(RpcResponse::decode(&e.encode()).unwrap(), e);
        }
    }

    #[test]
    fn caps_are_enforced_on_both_sides() {
        let too_big = Request {
            method: "POST".into(),
            path: "/".into(),
            body: vec![0; MAX_REQUEST_BODY + 1],
            ..Request::default()
        };
        let e = RpcRequest::new("org.cnode.events".parse().unwrap(), too_big).unwrap_err();
        assert_eq!(e.field, "body");
        // Headers that do not fit are dropped, not sent.
        let mut many = Request::get("/");
        many.headers = (0..40)
            .map(|i| (format!("x-h{i}"), "v".into()))
            .chain([("x-long".into(), "v".repeat(MAX_HEADER_VALUE + 1))])
            .collect();
        let req = RpcRequest::new("org.cnode.events".parse().unwrap(), many).unwrap();
        assert_eq!(req.request.headers.len(), MAX_REQUEST_HEADERS);
        // An answer over 4 MiB is an error, not a truncated body.
        let big = RpcResponse::answer(Response {
            status: 200,
            headers: Vec::new(),
            body: vec![0; MAX_RESPONSE_BODY + 1],
        });
        assert!(matches!(
            big,
            RpcResponse::Error {
                code: ErrorCode::AnswerTooLarge,
                ..
            }
        ));
        // A message over the cap is refused before it is parsed.
        let huge = vec![1u8; MAX_RESPONSE + 1];
        assert_eq!(
            RpcResponse::decode(&huge),
            Err(DecodeError::Oversized(huge.len()))
        );
        assert_eq!(
            RpcRequest::decode(&huge[..MAX_REQUEST + 1]),
            Err(DecodeError::Oversized(MAX_REQUEST + 1))
        );
        // A body length over the cap, in a message under it.
        let mut bytes = events_request().encode();
        let at = bytes.len() - 4;
        bytes[at..].copy_from_slice(&((MAX_REQUEST_BODY as u32) + 1).to_le_bytes());
        assert_eq!(
            RpcRequest::decode(&bytes),
            Err(DecodeError::Invalid("body over the limit"))
        );
    }

    #[test]
    fn bad_messages_are_refused_without_panic() {
        let good = events_request().encode();
        for n in 0..good.len() {
            assert!(RpcRequest::decode(&good[..n]).is_err(), "prefix {n}");
            fuzz_check(&good[..n]);
        }
        let mut wrong = good.clone();
        wrong[0] = 2;
        assert_eq!(RpcRequest::decode(&wrong), Err(DecodeError::Version(2)));
        let mut tag = good.clone();
        tag[1] = 9;
        assert_eq!(RpcRequest::decode(&tag), Err(DecodeError::Tag(9)));
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(RpcRequest::decode(&trailing).is_err());
        let mut lower = good;
        // The method `GET` starts after version, tag and the id.
        let m = 2 + 1 + "org.cnode.events".len() + 1;
        lower[m] = b'g';
        assert_eq!(
            RpcRequest::decode(&lower),
            Err(DecodeError::Invalid("method"))
        );
        assert_eq!(
            RpcResponse::decode(&[1, 1, 0x58, 0x02, 0, 0, 0, 0, 0]),
            Err(DecodeError::Invalid("status"))
        );
        assert_eq!(
            RpcResponse::decode(&[1, 2, 99, 0, 0]),
            Err(DecodeError::Invalid("error code"))
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        #[test]
        fn decoders_survive_any_bytes(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
        ) {
            fuzz_check(&bytes);
            // The same bytes behind a valid header reach the field decoders.
            let mut framed = vec![VERSION, 1];
            framed.extend_from_slice(&bytes);
            fuzz_check(&framed);
            framed[1] = 2;
            fuzz_check(&framed);
        }
    }
}
