//! etcd's v2 keys API on the wire: request parameters built from a [`Request`], and answers
//! (JSON bodies plus the `X-Etcd-Index` header) turned into [`Reply`]s and [`Failure`]s.
//! Pure functions, so that every mapping is unit-tested without an etcd.

use flt_core::registry::{Action, Event, Failure, Node, Precondition, PutValue, Reply, Request};
use serde::Deserialize;

/// etcd v2 error codes that flt treats specially (etcd's `error/error.go`).
pub(crate) mod code {
    pub const KEY_NOT_FOUND: u32 = 100;
    pub const TEST_FAILED: u32 = 101;
    pub const NODE_EXIST: u32 = 105;
    pub const RAFT_INTERNAL: u32 = 300;
    pub const LEADER_ELECT: u32 = 301;
    pub const WATCHER_CLEARED: u32 = 400;
    pub const EVENT_INDEX_CLEARED: u32 = 401;
}

/// The HTTP method of a keys API call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Put,
    Delete,
}

/// One keys API call: `METHOD /v2/keys<key>?<query>` with a form body (PUT only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Call {
    pub method: Method,
    pub key: String,
    pub query: Vec<(&'static str, String)>,
    pub form: Vec<(&'static str, String)>,
    /// Safe to send again to another endpoint after a failure whose delivery is unknown.
    pub idempotent: bool,
}

/// Maps a Get, Put or Delete onto a keys API call. `Err` for a request etcd v2 cannot express.
pub(crate) fn build_call(request: &Request, quorum: bool) -> Result<Call, Failure> {
    let invalid = |message: &str| Failure::Rejected {
        code: 0,
        message: message.to_string(),
    };
    match request {
        Request::Get { key, recursive } => {
            let mut query = vec![("sorted", "true".to_string())];
            if *recursive {
                query.push(("recursive", "true".to_string()));
            }
            if quorum {
                query.push(("quorum", "true".to_string()));
            }
            Ok(Call {
                method: Method::Get,
                key: key.clone(),
                query,
                form: Vec::new(),
                idempotent: true,
            })
        }
        Request::Put {
            key,
            value,
            ttl,
            precondition,
        } => {
            let mut form = Vec::new();
            match value {
                PutValue::Value(v) => form.push(("value", v.clone())),
                PutValue::Directory => form.push(("dir", "true".to_string())),
                PutValue::RefreshTtl => {
                    if ttl.is_none() {
                        return Err(invalid("a TTL refresh needs a TTL"));
                    }
                    if *precondition == Precondition::Absent {
                        return Err(invalid("a TTL refresh needs an existing key"));
                    }
                    form.push(("refresh", "true".to_string()));
                    form.push(("prevExist", "true".to_string()));
                }
            }
            if let Some(ttl) = ttl {
                // etcd counts whole seconds; round up so a TTL never ends early.
                let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
                form.push(("ttl", secs.max(1).to_string()));
            }
            match precondition {
                Precondition::None => {}
                Precondition::Absent => form.push(("prevExist", "false".to_string())),
                Precondition::Present => {
                    if *value != PutValue::RefreshTtl {
                        form.push(("prevExist", "true".to_string()));
                    }
                }
                Precondition::Index(index) => form.push(("prevIndex", index.to_string())),
                Precondition::Value(v) => form.push(("prevValue", v.clone())),
            }
            Ok(Call {
                method: Method::Put,
                key: key.clone(),
                query: Vec::new(),
                form,
                // Only an unconditional write of a value (or a refresh) gives the same
                // outcome when applied twice.
                idempotent: matches!(
                    (value, precondition),
                    (PutValue::Value(_), Precondition::None) | (PutValue::RefreshTtl, _)
                ),
            })
        }
        Request::Delete {
            key,
            precondition,
            recursive,
        } => {
            let mut query = Vec::new();
            if *recursive {
                query.push(("recursive", "true".to_string()));
            }
            match precondition {
                // A plain delete already fails on a missing key.
                Precondition::None | Precondition::Present => {}
                Precondition::Absent => {
                    return Err(invalid("cannot delete a key that must be absent"));
                }
                Precondition::Index(index) => query.push(("prevIndex", index.to_string())),
                Precondition::Value(v) => query.push(("prevValue", v.clone())),
            }
            Ok(Call {
                method: Method::Delete,
                key: key.clone(),
                query,
                form: Vec::new(),
                idempotent: false,
            })
        }
        Request::Watch { .. } => Err(invalid("a watch is not a single call: use a watch")),
    }
}

/// One watch of `prefix` (recursive) from `wait_index` (0: from now): streamed (every change
/// on one answer) or a long-poll (the first change only).
pub(crate) fn watch_call(prefix: &str, wait_index: u64, stream: bool) -> Call {
    let mut query = vec![
        ("wait", "true".to_string()),
        ("recursive", "true".to_string()),
    ];
    if stream {
        query.push(("stream", "true".to_string()));
    }
    if wait_index > 0 {
        query.push(("waitIndex", wait_index.to_string()));
    }
    Call {
        method: Method::Get,
        key: prefix.to_string(),
        query,
        form: Vec::new(),
        idempotent: true,
    }
}

#[derive(Deserialize)]
struct WireNode {
    key: Option<String>,
    value: Option<String>,
    #[serde(default)]
    dir: bool,
    #[serde(default)]
    nodes: Vec<WireNode>,
    #[serde(rename = "modifiedIndex", default)]
    modified_index: u64,
    #[serde(rename = "createdIndex", default)]
    created_index: u64,
    ttl: Option<i64>,
}

impl WireNode {
    fn into_node(self) -> Node {
        let mut nodes: Vec<Node> = self.nodes.into_iter().map(WireNode::into_node).collect();
        nodes.sort_by(|a, b| a.key.cmp(&b.key));
        Node {
            // etcd leaves the key out for the root directory.
            key: self.key.unwrap_or_else(|| "/".to_string()),
            value: if self.dir { None } else { self.value },
            dir: self.dir,
            modified_index: self.modified_index,
            created_index: self.created_index,
            ttl: self.ttl,
            nodes,
        }
    }
}

#[derive(Deserialize)]
struct WireAnswer {
    action: String,
    node: Option<WireNode>,
    #[serde(rename = "prevNode")]
    prev_node: Option<WireNode>,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(rename = "errorCode")]
    error_code: Option<u32>,
    message: Option<String>,
    cause: Option<String>,
    index: Option<u64>,
}

/// An answer that is neither success nor a definite refusal: try again (elsewhere, or later).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Transient(pub String);

/// What one HTTP exchange with etcd gave.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // one value per HTTP exchange
pub(crate) enum Answer {
    Done(Result<Reply, Failure>),
    Retry(Transient),
}

fn parse_action(action: &str) -> Option<Action> {
    Some(match action {
        "set" => Action::Set,
        "create" => Action::Create,
        "update" => Action::Update,
        "compareAndSwap" => Action::CompareAndSwap,
        "delete" => Action::Delete,
        "compareAndDelete" => Action::CompareAndDelete,
        "expire" => Action::Expire,
        _ => return None,
    })
}

/// Maps an error body (or an error status without one) onto a failure.
fn parse_error(status: u16, body: &str, precondition: &Precondition) -> Answer {
    let parsed: Option<WireError> = serde_json::from_str(body).ok();
    let Some(error) = parsed.filter(|e| e.error_code.is_some() || e.message.is_some()) else {
        if status >= 500 {
            return Answer::Retry(Transient(format!("HTTP {status}: {}", body.trim())));
        }
        return Answer::Done(Err(Failure::Rejected {
            code: 0,
            message: format!("HTTP {status}: {}", body.trim()),
        }));
    };
    let message = match (&error.message, &error.cause) {
        (Some(m), Some(c)) if !c.is_empty() => format!("{m} ({c})"),
        (Some(m), _) => m.clone(),
        (None, _) => String::new(),
    };
    let Some(code) = error.error_code else {
        // Refusals from outside the keys store, such as "Insufficient credentials".
        return Answer::Done(Err(Failure::Rejected {
            code: 0,
            message: format!("HTTP {status}: {message}"),
        }));
    };
    Answer::Done(Err(match code {
        code::KEY_NOT_FOUND if *precondition == Precondition::Present => {
            Failure::PreconditionFailed
        }
        code::KEY_NOT_FOUND => Failure::NotFound,
        code::TEST_FAILED | code::NODE_EXIST => Failure::PreconditionFailed,
        code::EVENT_INDEX_CLEARED => Failure::HistoryLost {
            index: error.index.unwrap_or(0),
        },
        code::RAFT_INTERNAL | code::LEADER_ELECT | code::WATCHER_CLEARED => {
            return Answer::Retry(Transient(format!("etcd error {code}: {message}")));
        }
        code => Failure::Rejected { code, message },
    }))
}

/// Turns the answer to a Get, Put or Delete into a reply or failure.
pub(crate) fn parse_answer(
    request: &Request,
    status: u16,
    etcd_index: Option<u64>,
    body: &str,
) -> Answer {
    let precondition = match request {
        Request::Put { precondition, .. } | Request::Delete { precondition, .. } => {
            precondition.clone()
        }
        _ => Precondition::None,
    };
    if !(200..300).contains(&status) {
        return parse_error(status, body, &precondition);
    }
    let answer: WireAnswer = match serde_json::from_str(body) {
        Ok(answer) => answer,
        Err(e) => return Answer::Retry(Transient(format!("unreadable etcd answer: {e}"))),
    };
    let Some(node) = answer.node else {
        return Answer::Retry(Transient(format!(
            "etcd answer to {:?} without a node",
            answer.action
        )));
    };
    let node = node.into_node();
    Answer::Done(Ok(match request {
        Request::Get { .. } => Reply::Got {
            index: etcd_index.unwrap_or(node.modified_index),
            node,
        },
        Request::Delete { .. } => Reply::Deleted {
            index: node.modified_index,
        },
        _ => Reply::Put { node },
    }))
}

/// What one watch long-poll gave.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // one value per long-poll
pub(crate) enum WatchAnswer {
    /// A change; the next poll starts at its index + 1.
    Event(Event),
    /// Nothing (etcd closed the poll, or it timed out): poll again from this index.
    Idle { next_index: u64 },
    /// A definite failure that ends the watch.
    Failed(Failure),
    /// Try again (perhaps elsewhere) from the same index.
    Retry(Transient),
}

/// Turns the answer to one long-poll at `wait_index` into a watch step. `etcd_index` is the
/// `X-Etcd-Index` header: the index etcd had when it armed the watch. No event under the prefix
/// was missed up to it, so an idle poll may resume from it + 1, which keeps the watch inside
/// etcd's 1000-event history even when only unrelated keys change.
pub(crate) fn parse_watch(
    wait_index: u64,
    status: u16,
    etcd_index: Option<u64>,
    body: &str,
) -> WatchAnswer {
    let idle_next = match etcd_index {
        Some(index) if index + 1 > wait_index => index + 1,
        _ => wait_index,
    };
    if !(200..300).contains(&status) {
        return match parse_error(status, body, &Precondition::None) {
            Answer::Done(Err(failure)) => WatchAnswer::Failed(failure),
            Answer::Done(Ok(_)) => WatchAnswer::Idle {
                next_index: wait_index,
            },
            Answer::Retry(t) => WatchAnswer::Retry(t),
        };
    }
    if body.trim().is_empty() {
        return WatchAnswer::Idle {
            next_index: idle_next,
        };
    }
    let answer: WireAnswer = match serde_json::from_str(body) {
        Ok(answer) => answer,
        Err(e) => return WatchAnswer::Retry(Transient(format!("unreadable watch event: {e}"))),
    };
    let (Some(action), Some(node)) = (parse_action(&answer.action), answer.node) else {
        return WatchAnswer::Retry(Transient(format!(
            "unexpected watch answer {:?}",
            answer.action
        )));
    };
    WatchAnswer::Event(Event {
        action,
        node: node.into_node(),
        prev_node: answer.prev_node.map(WireNode::into_node),
    })
}

/// Percent-encodes a key for the URL path, keeping `/` as the separator.
pub(crate) fn encode_key_path(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 1);
    if !key.starts_with('/') {
        out.push('/');
    }
    for byte in key.bytes() {
        match byte {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'.'
            | b'_'
            | b'~'
            | b'/'
            | b'@'
            | b':' => out.push(char::from(byte)),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// RFC 4648 base64 of `user:password`, for the `Authorization: Basic` header.
pub fn basic_auth_header(user: &str, password: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{password}");
    let mut out = String::from("Basic ");
    for chunk in input.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn put(value: PutValue, ttl: Option<Duration>, precondition: Precondition) -> Request {
        Request::Put {
            key: "/k".into(),
            value,
            ttl,
            precondition,
        }
    }

    fn form(request: &Request) -> Vec<(&'static str, String)> {
        build_call(request, true).unwrap().form
    }

    #[test]
    fn put_parameters_for_each_precondition() {
        let v = || PutValue::Value("x".into());
        let s = |x: &str| x.to_string();
        assert_eq!(
            form(&put(v(), None, Precondition::None)),
            [("value", s("x"))]
        );
        assert_eq!(
            form(&put(
                v(),
                Some(Duration::from_millis(1500)),
                Precondition::Absent
            )),
            [
                ("value", s("x")),
                ("ttl", s("2")),
                ("prevExist", s("false"))
            ]
        );
        assert_eq!(
            form(&put(v(), None, Precondition::Present)),
            [("value", s("x")), ("prevExist", s("true"))]
        );
        assert_eq!(
            form(&put(v(), None, Precondition::Index(7))),
            [("value", s("x")), ("prevIndex", s("7"))]
        );
        assert_eq!(
            form(&put(v(), None, Precondition::Value("old".into()))),
            [("value", s("x")), ("prevValue", s("old"))]
        );
        assert_eq!(
            form(&put(
                PutValue::Directory,
                Some(Duration::from_secs(30)),
                Precondition::None
            )),
            [("dir", s("true")), ("ttl", s("30"))]
        );
        assert_eq!(
            form(&put(
                PutValue::RefreshTtl,
                Some(Duration::from_secs(30)),
                Precondition::Present
            )),
            [
                ("refresh", s("true")),
                ("prevExist", s("true")),
                ("ttl", s("30"))
            ]
        );
        assert!(build_call(&put(PutValue::RefreshTtl, None, Precondition::None), true).is_err());
        assert!(
            build_call(
                &put(
                    PutValue::RefreshTtl,
                    Some(Duration::from_secs(1)),
                    Precondition::Absent
                ),
                true
            )
            .is_err()
        );
    }

    #[test]
    fn get_and_delete_parameters() {
        let get = build_call(
            &Request::Get {
                key: "/a".into(),
                recursive: true,
            },
            true,
        )
        .unwrap();
        assert_eq!(get.method, Method::Get);
        assert!(get.idempotent);
        assert_eq!(
            get.query,
            [
                ("sorted", "true".to_string()),
                ("recursive", "true".to_string()),
                ("quorum", "true".to_string())
            ]
        );
        let delete = build_call(
            &Request::Delete {
                key: "/a".into(),
                precondition: Precondition::Value("m1".into()),
                recursive: false,
            },
            true,
        )
        .unwrap();
        assert_eq!(delete.query, [("prevValue", "m1".to_string())]);
        assert!(!delete.idempotent);
    }

    #[test]
    fn error_codes_become_typed_failures() {
        let get = Request::Get {
            key: "/a".into(),
            recursive: false,
        };
        let present = put(PutValue::Value("x".into()), None, Precondition::Present);
        let cases = [
            (
                &get,
                404,
                r#"{"errorCode":100,"message":"Key not found","cause":"/a","index":5}"#,
                Answer::Done(Err(Failure::NotFound)),
            ),
            (
                &present,
                404,
                r#"{"errorCode":100,"message":"Key not found","cause":"/k","index":5}"#,
                Answer::Done(Err(Failure::PreconditionFailed)),
            ),
            (
                &present,
                412,
                r#"{"errorCode":101,"message":"Compare failed","cause":"[a != b]","index":5}"#,
                Answer::Done(Err(Failure::PreconditionFailed)),
            ),
            (
                &present,
                412,
                r#"{"errorCode":105,"message":"Key already exists","cause":"/k","index":5}"#,
                Answer::Done(Err(Failure::PreconditionFailed)),
            ),
            (
                &get,
                400,
                r#"{"errorCode":401,"message":"The event in requested index is outdated and cleared","cause":"the requested history has been cleared [8/2]","index":1007}"#,
                Answer::Done(Err(Failure::HistoryLost { index: 1007 })),
            ),
            (
                &get,
                403,
                r#"{"errorCode":102,"message":"Not a file","cause":"/a","index":5}"#,
                Answer::Done(Err(Failure::Rejected {
                    code: 102,
                    message: "Not a file (/a)".into(),
                })),
            ),
            (
                &get,
                401,
                r#"{"message":"Insufficient credentials"}"#,
                Answer::Done(Err(Failure::Rejected {
                    code: 0,
                    message: "HTTP 401: Insufficient credentials".into(),
                })),
            ),
            (
                &get,
                500,
                r#"{"errorCode":300,"message":"Raft Internal Error","index":5}"#,
                Answer::Retry(Transient("etcd error 300: Raft Internal Error".into())),
            ),
            (
                &get,
                503,
                "no leader",
                Answer::Retry(Transient("HTTP 503: no leader".into())),
            ),
        ];
        for (request, status, body, expected) in cases {
            assert_eq!(
                parse_answer(request, status, Some(9), body),
                expected,
                "{body}"
            );
        }
    }

    #[test]
    fn get_answer_is_a_sorted_tree_with_the_etcd_index() {
        let body = r#"{"action":"get","node":{"dir":true,"nodes":[
            {"key":"/b","value":"2","modifiedIndex":4,"createdIndex":4,"ttl":30,"expiration":"x"},
            {"key":"/a","dir":true,"modifiedIndex":3,"createdIndex":3,"nodes":[
                {"key":"/a/y","value":"","modifiedIndex":6,"createdIndex":6}]}]}}"#;
        let Answer::Done(Ok(Reply::Got { node, index })) = parse_answer(
            &Request::Get {
                key: "/".into(),
                recursive: true,
            },
            200,
            Some(12),
            body,
        ) else {
            panic!("not a Got");
        };
        assert_eq!(index, 12);
        assert_eq!(node.key, "/");
        let keys: Vec<_> = node.walk().map(|n| n.key.as_str()).collect();
        assert_eq!(keys, ["/", "/a", "/a/y", "/b"]);
        assert_eq!(node.nodes[1].ttl, Some(30));
        assert_eq!(node.nodes[1].value.as_deref(), Some("2"));
        assert_eq!(node.nodes[0].nodes[0].value.as_deref(), Some(""));
        assert!(node.nodes[0].dir && node.nodes[0].value.is_none());
    }

    #[test]
    fn watch_answers() {
        let body = r#"{"action":"expire","node":{"key":"/p/x","modifiedIndex":20,"createdIndex":9},"prevNode":{"key":"/p/x","value":"v","modifiedIndex":9,"createdIndex":9}}"#;
        let WatchAnswer::Event(event) = parse_watch(10, 200, Some(15), body) else {
            panic!("not an event");
        };
        assert_eq!(event.action, Action::Expire);
        assert_eq!(event.node.modified_index, 20);
        assert_eq!(event.prev_node.unwrap().value.as_deref(), Some("v"));
        // etcd closed the poll without an event: nothing happened up to the armed index.
        assert_eq!(
            parse_watch(10, 200, Some(15), ""),
            WatchAnswer::Idle { next_index: 16 }
        );
        assert_eq!(
            parse_watch(10, 200, Some(3), ""),
            WatchAnswer::Idle { next_index: 10 }
        );
        assert_eq!(
            parse_watch(
                10,
                400,
                Some(1500),
                r#"{"errorCode":401,"message":"outdated","index":1500}"#
            ),
            WatchAnswer::Failed(Failure::HistoryLost { index: 1500 })
        );
    }

    #[test]
    fn key_paths_and_basic_auth() {
        assert_eq!(
            encode_key_path("/_coreos.com/flt/job/a@1.service/object"),
            "/_coreos.com/flt/job/a@1.service/object"
        );
        assert_eq!(encode_key_path("a b\\x2d?#%"), "/a%20b%5Cx2d%3F%23%25");
        assert_eq!(
            basic_auth_header("root", "secret"),
            "Basic cm9vdDpzZWNyZXQ="
        );
        assert_eq!(basic_auth_header("a", "b"), "Basic YTpi");
        assert_eq!(basic_auth_header("ab", "c"), "Basic YWI6Yw==");
    }
}
