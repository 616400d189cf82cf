//! Generated HTTP requests for fuzzing Rivet's two APIs (issue 15): random and mutated JSON
//! bodies and JSON-patch documents, query strings, microversion headers, paths (unknown ones,
//! traversal attempts, odd identifiers), oversized, truncated and non-UTF-8 bodies. The values
//! come from proptest strategies run on a fixed seed, so a run is the same every time and
//! bounded in count. The caller describes its API as a [`Surface`]; every URL in the seeds
//! points at loopback, and a random string never becomes a reachable URL, so no request can
//! make a server reach past 127.0.0.1.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::Value;

/// One request to send.
#[derive(Debug, Clone)]
pub struct Request {
    /// HTTP method.
    pub method: reqwest::Method,
    /// Path and query, starting with `/`.
    pub path: String,
    /// Extra headers (the microversion header, content types).
    pub headers: Vec<(String, String)>,
    /// The body, when there is one.
    pub body: Option<Vec<u8>>,
}

/// What an API looks like, for the generator.
#[derive(Debug, Clone, Default)]
pub struct Surface {
    /// Path templates: `{ident}` is replaced by one of `idents` or a generated string.
    pub paths: Vec<String>,
    /// Identifiers worth using (existing node and port UUIDs, names, command ids).
    pub idents: Vec<String>,
    /// Valid bodies to mutate.
    pub bodies: Vec<Value>,
    /// Query keys the API knows.
    pub query_keys: Vec<String>,
    /// A header and the values to try for it (`X-OpenStack-Ironic-API-Version`).
    pub version_header: Option<(String, Vec<String>)>,
}

/// A JSON value of bounded depth and size.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(Value::from(u64::MAX)),
        Just(Value::from(-1)),
        Just(Value::from(1e300)),
        any::<String>().prop_map(Value::String),
        "[a-z_/.~-]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,10}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON-patch document: operations on real and made-up paths.
fn json_patch() -> impl Strategy<Value = Value> {
    let op = (
        prop_oneof!["add", "remove", "replace", "move", "copy", "test", "bogus"],
        prop_oneof![
            "/[a-z_]{1,16}",
            "/(driver_info|instance_info|properties|extra|network_data)/[a-z_]{0,8}",
            "/(uuid|provision_state|reservation|driver|name|maintenance|retired|protected)",
            any::<String>(),
        ],
        json_value(),
        any::<bool>(),
    )
        .prop_map(|(op, path, value, with_value)| {
            let mut doc = serde_json::json!({"op": op, "path": path});
            if with_value {
                doc["value"] = value;
            }
            if op == "move" || op == "copy" {
                doc["from"] = Value::String("/extra".into());
            }
            doc
        });
    prop_oneof![prop::collection::vec(op, 0..5).prop_map(Value::Array), json_value(),]
}

/// Replace, drop or add a member somewhere in `seed`, once per edit.
fn mutate(mut seed: Value, edits: &[(u8, String, Value)]) -> Value {
    for (kind, key, value) in edits {
        // Walk into a nested object now and then, so deep fields get hit too: find the JSON
        // pointer first, then edit there.
        let mut pointer = String::new();
        let mut at = &seed;
        while let Value::Object(map) = at {
            let Some(next) = map.keys().nth(key.len() % map.len().max(1)) else {
                break;
            };
            if kind % 3 != 0 || !map[next].is_object() {
                break;
            }
            pointer.push('/');
            pointer.push_str(&next.replace('~', "~0").replace('/', "~1"));
            at = &map[next];
        }
        let Some(target) = seed.pointer_mut(&pointer) else {
            continue;
        };
        match target {
            Value::Object(map) if !map.is_empty() => {
                let victim = map.keys().nth(key.len() % map.len()).cloned().expect("non-empty");
                match kind % 4 {
                    0 => drop(map.remove(&victim)),
                    1 => drop(map.insert(victim, value.clone())),
                    _ => drop(map.insert(key.clone(), value.clone())),
                }
            }
            other => *other = value.clone(),
        }
    }
    seed
}

/// One body: none, random JSON, a mutated seed, a JSON patch, truncated, oversized or not UTF-8.
fn body(seeds: Vec<Value>) -> impl Strategy<Value = Option<Vec<u8>>> {
    let seeds = if seeds.is_empty() { vec![Value::Null] } else { seeds };
    let mutated = (
        prop::sample::select(seeds.clone()),
        prop::collection::vec((any::<u8>(), "[a-z_]{1,12}", json_value()), 1..4),
    )
        .prop_map(|(seed, edits)| Some(mutate(seed, &edits).to_string().into_bytes()));
    let truncated = (prop::sample::select(seeds.clone()), any::<prop::sample::Index>()).prop_map(|(seed, cut)| {
        let text = seed.to_string().into_bytes();
        let at = cut.index(text.len().max(1));
        Some(text[..at.min(text.len())].to_vec())
    });
    prop_oneof![
        2 => Just(None),
        3 => json_value().prop_map(|v| Some(v.to_string().into_bytes())),
        6 => mutated,
        2 => prop::sample::select(seeds).prop_map(|s| Some(s.to_string().into_bytes())),
        3 => json_patch().prop_map(|v| Some(v.to_string().into_bytes())),
        2 => truncated,
        1 => Just(Some(format!("{{\"name\": \"{}\"}}", "x".repeat(3 << 20)).into_bytes())),
        1 => Just(Some(vec![b'['; 200_000])),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Some),
        1 => Just(Some(b"{\"name\": \"\xff\xfe\"}".to_vec())),
    ]
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn request(surface: &Surface) -> impl Strategy<Value = Request> {
    let idents = if surface.idents.is_empty() {
        vec!["x".to_owned()]
    } else {
        surface.idents.clone()
    };
    let ident = prop_oneof![
        3 => prop::sample::select(idents),
        1 => any::<String>().prop_map(|s| percent_encode(&s)),
        1 => prop_oneof![
            Just("..%2F..%2F..%2Fetc%2Fpasswd".to_owned()),
            Just("%2e%2e".to_owned()),
            Just("00000000-0000-0000-0000-000000000000".to_owned()),
            Just("x".repeat(5000)),
            Just("%00".to_owned()),
        ],
    ];
    let keys = if surface.query_keys.is_empty() {
        vec!["fields".to_owned()]
    } else {
        surface.query_keys.clone()
    };
    let query = prop::collection::vec(
        (
            prop_oneof![prop::sample::select(keys), "[a-z_]{1,8}"],
            prop_oneof![
                any::<String>().prop_map(|s| percent_encode(&s)),
                "[a-z0-9_,.-]{0,16}",
                Just("-1".to_owned()),
                Just("99999999999999999999".to_owned()),
                Just("true".to_owned()),
            ],
        ),
        0..4,
    );
    let versions = surface.version_header.clone();
    let version = match &versions {
        Some((_, values)) if !values.is_empty() => prop::option::of(prop::sample::select(values.clone())).boxed(),
        _ => Just(None).boxed(),
    };
    let content_type = prop_oneof![
        4 => Just(Some("application/json".to_owned())),
        1 => Just(None),
        1 => Just(Some("text/plain".to_owned())),
    ];
    (
        prop::sample::select(vec![
            reqwest::Method::GET,
            reqwest::Method::POST,
            reqwest::Method::PUT,
            reqwest::Method::PATCH,
            reqwest::Method::DELETE,
            reqwest::Method::HEAD,
            reqwest::Method::OPTIONS,
        ]),
        prop::sample::select(surface.paths.clone()),
        ident,
        query,
        version,
        content_type,
        body(surface.bodies.clone()),
    )
        .prop_map(move |(method, template, ident, query, version, content_type, body)| {
            let mut path = template.replace("{ident}", &ident);
            if !query.is_empty() {
                let pairs: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
                path.push(if path.contains('?') { '&' } else { '?' });
                path.push_str(&pairs.join("&"));
            }
            let mut headers = Vec::new();
            if let (Some((name, _)), Some(v)) = (&versions, version) {
                headers.push((name.clone(), v));
            }
            if let Some(ct) = content_type {
                headers.push(("Content-Type".to_owned(), ct));
            }
            Request {
                method,
                path,
                headers,
                body,
            }
        })
}

/// `count` requests for `surface`, the same for the same `seed`.
pub fn requests(surface: &Surface, seed: [u8; 32], count: usize) -> Vec<Request> {
    sample(&request(surface), seed, count)
}

/// `count` values of `strategy`, the same for the same `seed` (no shrinking: each value is a
/// fixed case of a seeded run).
pub fn sample<S: Strategy>(strategy: &S, seed: [u8; 32], count: usize) -> Vec<S::Value> {
    let mut runner = TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
    (0..count)
        .map(|_| {
            strategy
                .new_tree(&mut runner)
                .expect("the strategies always generate")
                .current()
        })
        .collect()
}

/// How the server answered a run, by status class.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Requests sent.
    pub sent: usize,
    /// Answers by class: 2xx, 3xx, 4xx, 5xx.
    pub by_class: [usize; 4],
    /// The requests answered 5xx, with their answers, for the failure message.
    pub server_errors: Vec<String>,
}

impl Tally {
    /// Count one answer.
    pub fn add(&mut self, request: &Request, status: u16, answer: &str) {
        self.sent += 1;
        let class = usize::from(status / 100).clamp(2, 5) - 2;
        self.by_class[class] += 1;
        if status >= 500 && self.server_errors.len() < 10 {
            let body = request
                .body
                .as_ref()
                .map(|b| String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned());
            self.server_errors.push(format!(
                "{} {} {:?} body={body:?} -> {status} {}",
                request.method,
                &request.path[..request.path.len().min(300)],
                request.headers,
                &answer[..answer.len().min(300)]
            ));
        }
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [ok, redirect, client, server] = self.by_class;
        write!(
            f,
            "{} requests: {ok} 2xx, {redirect} 3xx, {client} 4xx, {server} 5xx",
            self.sent
        )
    }
}

/// Send `request` to `base`; the status and the body as text.
pub async fn send(http: &reqwest::Client, base: &str, request: &Request) -> (u16, String) {
    let mut builder = http.request(request.method.clone(), format!("{base}{}", request.path));
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    if let Some(body) = &request.body {
        builder = builder.body(body.clone());
    }
    match builder.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap_or_default())
        }
        // A request reqwest itself refuses to send (an invalid header value) never reached the
        // server: not the server's fault, counted as a client error.
        Err(e) if e.is_builder() => (400, format!("not sent: {e}")),
        // The server answered (413) and closed before taking the whole of an oversized body.
        Err(e) if request.body.as_ref().is_some_and(|b| b.len() > 1 << 20) && e.is_request() => {
            (413, format!("body refused: {}", rivet_common::error::error_chain(&e)))
        }
        Err(e) => (599, format!("no answer: {}", rivet_common::error::error_chain(&e))),
    }
}
