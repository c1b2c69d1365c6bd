//! The HTTP API v1 (spec §7, with the §12 fixes) through a real fltd on real test hosts and a
//! real etcd: every route, status code and error message, at `/flt/v1` and spot-checked at
//! `/fleet/v1`; pagination over 250 units; the metadata PATCH cases of fleet's functional suite
//! (TestMachinesPatch*); and a bad-input suite that checks, after every refused request, that
//! the registry in etcd is unchanged and no unit file reached the host.
//!
//! Requests are made with curl inside a host over fltd's unix socket, with `--path-as-is` so
//! that the server, not curl, cleans dot segments. Needs root and the tools of
//! `flt_tests::testhost`; skipped when `FLT_SKIP_HOST_TESTS=1`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use flt_tests::fltcluster::{API_SOCKET, FltCluster, FltClusterConfig, wait_for};
use serde_json::{Value, json};

/// The etcd key prefix flt uses by default (`core/src/registry/keys.rs`).
const PREFIX: &str = "/_coreos.com/flt";
/// fltd's body limit (1 MiB).
const BODY_LIMIT: usize = 1 << 20;
const SLEEP_OPTIONS: &str =
    r#"[{"section":"Service","name":"ExecStart","value":"/bin/sleep 100000"}]"#;

/// An HTTP response as curl saw it.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    /// What was asked, for assertion messages.
    request: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{self}\nbody is not JSON: {e}"))
    }

    /// Asserts the status and the exact error entity, with its JSON content type.
    fn assert_error(&self, status: u16, message: &str) {
        self.assert_error_with(status, |m| m == message, message);
    }

    /// Asserts the status and an error entity whose message satisfies `check`.
    fn assert_error_with(&self, status: u16, check: impl Fn(&str) -> bool, what: &str) {
        assert_eq!(self.status, status, "{self}");
        assert_eq!(
            self.header("Content-Type"),
            Some("application/json"),
            "{self}"
        );
        let body = self.json();
        let message = body["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{self}\nno error.message"));
        assert_eq!(body["error"]["code"], json!(status), "{self}");
        assert_eq!(
            body.as_object().map(|o| o.len()),
            Some(1),
            "only `error` at the top: {self}"
        );
        assert_eq!(
            body["error"].as_object().map(|o| o.len()),
            Some(2),
            "only code and message: {self}"
        );
        assert!(check(message), "message should be {what}: {self}");
    }

    /// Asserts a success without a body (201/204).
    fn assert_empty(&self, status: u16) {
        assert_eq!(self.status, status, "{self}");
        assert_eq!(self.body, "", "{self}");
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} -> {} {:?}\n{}",
            self.request, self.status, self.headers, self.body
        )
    }
}

/// A request: method, path (sent as is), extra headers, body.
struct Call<'a> {
    method: &'a str,
    path: String,
    headers: Vec<String>,
    body: Option<String>,
}

impl<'a> Call<'a> {
    fn new(method: &'a str, path: impl Into<String>) -> Self {
        Call {
            method,
            path: path.into(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// A JSON body with its content type.
    fn json(self, body: impl Into<String>) -> Self {
        self.header("Content-Type: application/json").body(body)
    }

    fn body(mut self, body: impl Into<String>) -> Self {
        self.body = Some(body.into());
        self
    }

    fn header(mut self, header: &str) -> Self {
        self.headers.push(header.to_string());
        self
    }
}

/// Sends `call` to fltd on host `index` with curl; the body travels through a file, so it may
/// be large or carry any byte.
fn send(flt: &FltCluster, index: usize, call: Call<'_>) -> Reply {
    let request = format!("{} {}", call.method, call.path);
    let body_file = "/tmp/api-fltd-body";
    let url = format!("http://flt{}", call.path);
    let mut args = vec![
        "curl",
        "-sS",
        "-i",
        "--path-as-is",
        "-m",
        "20",
        "--unix-socket",
        API_SOCKET,
        "-X",
        call.method,
    ];
    for header in &call.headers {
        args.extend(["-H", header.as_str()]);
    }
    let data = format!("@{body_file}");
    if let Some(body) = &call.body {
        flt.write_file(index, body_file, body);
        args.extend(["--data-binary", data.as_str()]);
    }
    args.push(&url);
    let out = flt.exec(index, &args);
    assert_eq!(out.code, 0, "{request}: curl failed: {out}");
    parse_reply(request, &out.stdout)
}

/// Splits curl's `-i` output into status, headers and body (skipping `100 Continue`).
fn parse_reply(request: String, text: &str) -> Reply {
    let mut rest = text;
    loop {
        let (head, body) = rest
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("{request}: no HTTP head in {text:?}"));
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{request}: bad status line {status_line:?}"));
        if status == 100 {
            rest = body;
            continue;
        }
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        return Reply {
            status,
            headers,
            body: body.to_string(),
            request,
        };
    }
}

fn get(flt: &FltCluster, path: &str) -> Reply {
    send(flt, 0, Call::new("GET", path))
}

fn put(flt: &FltCluster, path: &str, body: &str) -> Reply {
    send(flt, 0, Call::new("PUT", path).json(body))
}

/// A unit body with the given fields merged in.
fn unit_body(desired: Option<&str>, options: Option<&str>) -> String {
    let mut body = serde_json::Map::new();
    if let Some(desired) = desired {
        body.insert("desiredState".into(), json!(desired));
    }
    if let Some(options) = options {
        let options: Value = serde_json::from_str(options).expect("options JSON");
        body.insert("options".into(), options);
    }
    Value::Object(body).to_string()
}

/// Every key under flt's prefix with its value, except those that change on their own (the
/// engine lease and the machines' TTL-refreshed records keep their values, so they stay in).
fn registry(flt: &FltCluster) -> BTreeMap<String, String> {
    let text = flt
        .cluster()
        .etcd()
        .get(&format!("/v2/keys{PREFIX}/?recursive=true&sorted=true"))
        .unwrap_or_else(|e| panic!("read etcd: {e}"));
    let doc: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("etcd answer is not JSON ({e}): {text}"));
    let mut keys = BTreeMap::new();
    fn walk(node: &Value, keys: &mut BTreeMap<String, String>) {
        let key = node["key"].as_str().unwrap_or_default().to_string();
        if key.contains("/lease/") {
            return;
        }
        match node["nodes"].as_array() {
            Some(children) => children.iter().for_each(|c| walk(c, keys)),
            None if node["dir"] == json!(true) => {
                keys.insert(key, "<dir>".into());
            }
            None => {
                let value = node["value"].as_str().unwrap_or_default().to_string();
                keys.insert(key, value);
            }
        }
    }
    walk(&doc["node"], &mut keys);
    keys
}

/// The unit files the agent on host `index` has written.
fn unit_files(flt: &FltCluster, index: usize) -> String {
    flt.exec(
        index,
        &["sh", "-c", "ls -A /run/flt/units 2>/dev/null; true"],
    )
    .stdout
}

fn machine_id(flt: &FltCluster, index: usize) -> String {
    flt.host(index).machine_id().to_string()
}

/// Waits until `path` answers 200 with a body for which `check` holds.
fn wait_json(flt: &FltCluster, what: &str, path: &str, check: impl Fn(&Value) -> bool) -> Value {
    wait_for(what, Duration::from_secs(20), || {
        let reply = get(flt, path);
        if reply.status == 200 && check(&reply.json()) {
            Ok(reply.json())
        } else {
            Err(reply.to_string())
        }
    })
}

/// Units: discovery, create/replace/desired state/delete with every 4xx of the decision tree,
/// 405s and unknown paths, `/fleet/v1`, `Server`, the state routes of a scheduled unit, and 503
/// while fltd cannot reach etcd.
#[test]
fn units_routes_and_errors() {
    if !flt_tests::testhost::require_hosts() {
        return;
    }
    let flt = FltCluster::start(FltClusterConfig::new(1));
    let started = Instant::now();
    let me = machine_id(&flt, 0);

    // Discovery, at both prefixes; every response names the server.
    for prefix in ["/flt/v1", "/fleet/v1"] {
        let reply = get(&flt, &format!("{prefix}/discovery"));
        assert_eq!(reply.status, 200, "{reply}");
        assert_eq!(reply.header("Content-Type"), Some("application/json"));
        let doc = reply.json();
        assert_eq!(doc["kind"], json!("discovery#restDescription"), "{reply}");
        assert_eq!(doc["id"], json!("flt:v1"), "{reply}");
        assert!(doc["resources"]["Units"].is_object(), "{reply}");
        assert!(doc["resources"]["Machines"].is_object(), "{reply}");
        assert!(doc["resources"]["UnitState"].is_object(), "{reply}");
        // The whole API is described: every entity, every route.
        for schema in [
            "Unit",
            "UnitOption",
            "UnitPage",
            "UnitState",
            "Machine",
            "MachinePage",
        ] {
            assert_eq!(doc["schemas"][schema]["id"], json!(schema), "{reply}");
        }
        assert_eq!(
            doc["resources"]["Machines"]["methods"]["Patch"]["httpMethod"],
            json!("PATCH"),
            "{reply}"
        );
        assert_eq!(
            doc["resources"]["Units"]["methods"]["Set"]["path"],
            json!("units/{unitName}"),
            "{reply}"
        );
        send(&flt, 0, Call::new("POST", format!("{prefix}/discovery")))
            .assert_error(400, "only HTTP GET supported against this resource");
    }
    let server = format!("fltd/{}", env!("CARGO_PKG_VERSION"));
    for reply in [
        get(&flt, "/flt/v1/units"),
        get(&flt, "/flt/v1/units/none.service"),
        get(&flt, "/flt/v1/bogus"),
        send(&flt, 0, Call::new("POST", "/flt/v1/units")),
    ] {
        assert_eq!(reply.header("Server"), Some(server.as_str()), "{reply}");
    }

    // An empty registry: empty pages are `{}`.
    for path in ["/flt/v1/units", "/flt/v1/state", "/fleet/v1/units"] {
        let reply = get(&flt, path);
        assert_eq!((reply.status, reply.body.as_str()), (200, "{}"), "{reply}");
        assert_eq!(reply.header("Content-Type"), Some("application/json"));
    }

    // Create: options needed; desiredState defaults to inactive.
    get(&flt, "/flt/v1/units/hello.service").assert_error(404, "unit does not exist");
    put(&flt, "/flt/v1/units/hello.service", "{}")
        .assert_error(409, "unit does not exist and options field empty");
    put(
        &flt,
        "/flt/v1/units/hello.service",
        &unit_body(Some("inactive"), Some("[]")),
    )
    .assert_error(409, "unit does not exist and options field empty");
    let created = put(
        &flt,
        "/flt/v1/units/hello.service",
        &unit_body(None, Some(SLEEP_OPTIONS)),
    );
    created.assert_empty(201);
    assert_eq!(created.header("Content-Type"), None, "{created}");
    let reply = get(&flt, "/flt/v1/units/hello.service");
    assert_eq!(reply.status, 200, "{reply}");
    assert_eq!(reply.header("Content-Type"), Some("application/json"));
    let unit = reply.json();
    assert_eq!(unit["name"], json!("hello.service"), "{reply}");
    assert_eq!(unit["desiredState"], json!("inactive"), "{reply}");
    assert_eq!(
        unit["options"],
        serde_json::from_str::<Value>(SLEEP_OPTIONS).unwrap(),
        "{reply}"
    );
    assert_eq!(
        unit.get("machineID"),
        None,
        "an inactive unit is not scheduled: {reply}"
    );

    // The same options again: an update, which needs a desired state.
    put(
        &flt,
        "/flt/v1/units/hello.service",
        &unit_body(None, Some(SLEEP_OPTIONS)),
    )
    .assert_error(409, "must provide DesiredState to update existing unit");
    put(&flt, "/flt/v1/units/hello.service", "{}")
        .assert_error(409, "must provide DesiredState to update existing unit");
    // §12 item 5: desired states are validated on update (fleet stored anything).
    for bad in ["running", "LAUNCHED", " launched"] {
        put(
            &flt,
            "/flt/v1/units/hello.service",
            &unit_body(Some(bad), None),
        )
        .assert_error_with(
            400,
            |m| m.starts_with("invalid desiredState") && m.contains(bad),
            "invalid desiredState naming the value",
        );
    }
    put(
        &flt,
        "/flt/v1/units/hello.service",
        r#"{"name":"other.service","desiredState":"launched"}"#,
    )
    .assert_error(
        400,
        r#"name in URL "hello.service" differs from unit name in request body "other.service""#,
    );
    // The body's name may repeat the URL's.
    put(
        &flt,
        "/flt/v1/units/hello.service",
        r#"{"name":"hello.service","desiredState":"launched"}"#,
    )
    .assert_empty(204);
    // Launched: the engine schedules it here, the agent starts it and reports its state.
    let unit = wait_json(
        &flt,
        "hello.service launched on this machine",
        "/flt/v1/units/hello.service",
        |u| u["machineID"] == json!(me) && u["currentState"] == json!("launched"),
    );
    assert_eq!(unit["desiredState"], json!("launched"));
    let page = get(&flt, "/flt/v1/units").json();
    assert_eq!(page["units"], json!([unit]), "the list shows the same unit");
    assert_eq!(page.get("nextPageToken"), None, "{page}");
    // Setting the state it has is a 204 too.
    put(
        &flt,
        "/flt/v1/units/hello.service",
        &unit_body(Some("launched"), Some(SLEEP_OPTIONS)),
    )
    .assert_empty(204);

    // State of the running unit; §12 item 4: a missing one is a 404, not a crash.
    let state = wait_json(
        &flt,
        "hello.service state active",
        "/flt/v1/state/hello.service",
        |s| s["systemdActiveState"] == json!("active"),
    );
    assert_eq!(state["name"], json!("hello.service"));
    assert_eq!(state["machineID"], json!(me));
    assert_eq!(state["systemdLoadState"], json!("loaded"));
    assert_eq!(state["systemdSubState"], json!("running"));
    assert_eq!(state["hash"].as_str().map(str::len), Some(40), "{state}");
    get(&flt, "/flt/v1/state/nothing.service").assert_error(404, "unit state does not exist");
    get(&flt, "/fleet/v1/state/nothing.service").assert_error(404, "unit state does not exist");
    let states = get(&flt, "/flt/v1/state").json();
    assert_eq!(states, json!({"states": [state]}));
    let filtered = |query: &str| get(&flt, &format!("/flt/v1/state?{query}")).json();
    assert_eq!(filtered(&format!("machineID={me}")), states);
    assert_eq!(filtered("unitName=hello.service"), states);
    assert_eq!(
        filtered(&format!("unitName=hello.service&machineID={me}")),
        states
    );
    assert_eq!(filtered("machineID=someone-else"), json!({}));
    assert_eq!(filtered("unitName=hello"), json!({}), "exact, not a prefix");
    assert_eq!(
        filtered("unitName=other.service&unitName=hello.service"),
        json!({}),
        "the first value counts"
    );

    // Replace: other options overwrite the unit and reset its desired state.
    let other = r#"[{"section":"Service","name":"ExecStart","value":"/bin/sleep 200000"}]"#;
    put(
        &flt,
        "/flt/v1/units/hello.service",
        &unit_body(None, Some(other)),
    )
    .assert_empty(201);
    let unit = get(&flt, "/flt/v1/units/hello.service").json();
    assert_eq!(unit["desiredState"], json!("inactive"), "{unit}");
    assert_eq!(
        unit["options"],
        serde_json::from_str::<Value>(other).unwrap()
    );
    wait_for(
        "hello.service stopped",
        Duration::from_secs(20),
        || match flt.unit_state(0, "hello.service").as_str() {
            "active" => Err("still active".to_string()),
            _ => Ok(()),
        },
    );

    // Templates: never active (§12 item 5: not even when created).
    put(
        &flt,
        "/flt/v1/units/tmpl@.service",
        &unit_body(Some("launched"), Some(SLEEP_OPTIONS)),
    )
    .assert_error(400, r#"cannot activate template "tmpl@.service""#);
    get(&flt, "/flt/v1/units/tmpl@.service").assert_error(404, "unit does not exist");
    put(
        &flt,
        "/flt/v1/units/tmpl%40.service",
        &unit_body(None, Some(SLEEP_OPTIONS)),
    )
    .assert_empty(201);
    for state in ["loaded", "launched"] {
        put(
            &flt,
            "/flt/v1/units/tmpl@.service",
            &unit_body(Some(state), None),
        )
        .assert_error(400, r#"cannot activate template "tmpl@.service""#);
    }
    put(
        &flt,
        "/flt/v1/units/tmpl@.service",
        &unit_body(Some("inactive"), None),
    )
    .assert_empty(204);

    // /fleet/v1 serves the same registry.
    send(
        &flt,
        0,
        Call::new("PUT", "/fleet/v1/units/fleet.service")
            .json(unit_body(None, Some(SLEEP_OPTIONS))),
    )
    .assert_empty(201);
    assert_eq!(
        get(&flt, "/flt/v1/units/fleet.service").json(),
        get(&flt, "/fleet/v1/units/fleet.service").json()
    );
    // And fleet's legacy alias.
    assert_eq!(
        get(&flt, "/flt/v1/units/fleet.service").json(),
        get(&flt, "/v1-alpha/units/fleet.service").json()
    );
    let names: Vec<Value> = get(&flt, "/fleet/v1/units").json()["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].clone())
        .collect();
    assert_eq!(
        names,
        [
            json!("fleet.service"),
            json!("hello.service"),
            json!("tmpl@.service")
        ],
        "sorted by name"
    );

    // Delete: 204 without a body or content type, then 404.
    for (prefix, name) in [("/flt/v1", "hello.service"), ("/fleet/v1", "fleet.service")] {
        let path = format!("{prefix}/units/{name}");
        let deleted = send(&flt, 0, Call::new("DELETE", &path));
        deleted.assert_empty(204);
        assert_eq!(deleted.header("Content-Type"), None, "{deleted}");
        send(&flt, 0, Call::new("DELETE", &path)).assert_error(404, "unit does not exist");
        get(&flt, &path).assert_error(404, "unit does not exist");
    }
    let keys = registry(&flt);
    assert!(
        !keys
            .keys()
            .any(|k| k.starts_with(&format!("{PREFIX}/job/hello.service"))),
        "{keys:#?}"
    );

    // Wrong methods: 405 with fleet's texts and an Allow header.
    for (method, path, message, allow) in [
        (
            "POST",
            "/flt/v1/units",
            "only GET supported against this resource",
            "GET",
        ),
        (
            "PUT",
            "/flt/v1/units",
            "only GET supported against this resource",
            "GET",
        ),
        (
            "POST",
            "/flt/v1/units/tmpl@.service",
            "only GET, PUT and DELETE supported against this resource",
            "GET, PUT, DELETE",
        ),
        (
            "PATCH",
            "/fleet/v1/units/x.service",
            "only GET, PUT and DELETE supported against this resource",
            "GET, PUT, DELETE",
        ),
        (
            "DELETE",
            "/flt/v1/state",
            "only GET supported against this resource",
            "GET",
        ),
        (
            "PUT",
            "/flt/v1/state/x.service",
            "only GET supported against this resource",
            "GET",
        ),
        (
            "DELETE",
            "/flt/v1/machines",
            "only GET and PATCH supported against this resource",
            "GET, PATCH",
        ),
        (
            "PUT",
            "/fleet/v1/machines",
            "only GET and PATCH supported against this resource",
            "GET, PATCH",
        ),
    ] {
        let reply = send(&flt, 0, Call::new(method, path));
        reply.assert_error(405, message);
        assert_eq!(reply.header("Allow"), Some(allow), "{reply}");
    }
    // The root and the bare prefixes: 405 with an empty message; unknown paths: 404.
    for path in ["/", "/flt/v1", "/fleet/v1"] {
        get(&flt, path).assert_error(405, "");
    }
    for path in [
        "/flt/v1/",
        "/flt/v1/units/",
        "/flt/v1/machines/",
        "/flt/v1/state/",
        "/flt/v1/units/a/b.service",
        "/flt/v1/units/a%2Fb.service",
        "/flt/v1/machines/x",
        "/flt/v1/bogus",
        "/flt/v2/units",
        "/units",
    ] {
        get(&flt, path).assert_error(404, "");
    }
    // Unclean paths are redirected (Go's ServeMux), keeping the query.
    let reply = get(&flt, "/flt/v1//units?unitName=x");
    assert_eq!(reply.status, 301, "{reply}");
    assert_eq!(reply.header("Location"), Some("/flt/v1/units?unitName=x"));

    // 503 on every path while fltd cannot reach etcd: stop etcd and restart fltd.
    flt.cluster().etcd_stop().expect("stop etcd");
    flt.exec(0, &["systemctl", "restart", "--no-block", "fltd"]);
    wait_for("fltd answers 503", Duration::from_secs(20), || {
        let reply = get(&flt, "/flt/v1/units");
        if reply.status == 503 {
            Ok(())
        } else {
            Err(reply.to_string())
        }
    });
    for path in [
        "/flt/v1/units",
        "/flt/v1/discovery",
        "/fleet/v1/machines",
        "/metrics",
        "/x",
    ] {
        let reply = get(&flt, path);
        reply.assert_error(503, "flt server unable to communicate with etcd");
        assert_eq!(reply.header("Server"), Some(server.as_str()), "{reply}");
    }
    flt.cluster().etcd_start().expect("start etcd");
    flt.wait_machines(1, Duration::from_secs(30));
    let names: Vec<Value> = get(&flt, "/flt/v1/units").json()["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].clone())
        .collect();
    assert_eq!(names, [json!("tmpl@.service")], "the registry survived");
    println!(
        "units_routes_and_errors: checks took {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// Machines and metadata (TestMachinesPatchAddModify/Delete/Bad, both value shapes), state
/// filters across two machines, and a global unit's entities.
#[test]
fn machines_state_and_metadata() {
    if !flt_tests::testhost::require_hosts() {
        return;
    }
    let flt = FltCluster::start(FltClusterConfig::new(2));
    let started = Instant::now();
    let (m0, m1) = (machine_id(&flt, 0), machine_id(&flt, 1));
    let machines = |prefix: &str| -> BTreeMap<String, Value> {
        let reply = get(&flt, &format!("{prefix}/machines"));
        assert_eq!(reply.status, 200, "{reply}");
        assert_eq!(reply.header("Content-Type"), Some("application/json"));
        let page = reply.json();
        assert_eq!(page.get("nextPageToken"), None, "{reply}");
        page["machines"]
            .as_array()
            .unwrap_or_else(|| panic!("{reply}"))
            .iter()
            .map(|m| (m["id"].as_str().unwrap_or_default().to_string(), m.clone()))
            .collect()
    };
    let listed = machines("/flt/v1");
    assert_eq!(listed.len(), 2, "{listed:?}");
    for index in 0..2 {
        let machine = &listed[&machine_id(&flt, index)];
        assert_eq!(
            machine["primaryIP"],
            json!(flt.host(index).ip().to_string()),
            "{machine}"
        );
        // No metadata configured: the key is omitted.
        assert_eq!(machine.get("metadata"), None, "{machine}");
    }
    assert_eq!(machines("/fleet/v1"), listed);
    let metadata = |id: &str| machines("/flt/v1")[id].get("metadata").cloned();
    let patch = |body: &str| send(&flt, 0, Call::new("PATCH", "/flt/v1/machines").json(body));

    // TestMachinesPatchAddModify: add on m0, replace on m1 (fleet's nested value object).
    let reply = patch(&format!(
        r#"[{{"op":"add","path":"/{m0}/metadata/foo","value":{{"value":"bar"}}}},
            {{"op":"replace","path":"/{m1}/metadata/ping","value":{{"value":"splat"}}}}]"#
    ));
    reply.assert_empty(204);
    assert_eq!(
        reply.header("Content-Type"),
        Some("application/json"),
        "{reply}"
    );
    assert_eq!(metadata(&m0), Some(json!({"foo": "bar"})));
    assert_eq!(metadata(&m1), Some(json!({"ping": "splat"})));
    // §12 item 6: the documented plain-string value works too; Go's case-insensitive "Value".
    patch(&format!(
        r#"[{{"op":"replace","path":"/{m0}/metadata/foo","value":"baz"}},
            {{"op":"add","path":"/{m0}/metadata/a.b-c_d","value":{{"Value":"1"}}}}]"#
    ))
    .assert_empty(204);
    assert_eq!(metadata(&m0), Some(json!({"foo": "baz", "a.b-c_d": "1"})));
    // Through /fleet/v1, and a machine that does not exist (yet) is fine.
    let reply = send(
        &flt,
        0,
        Call::new("PATCH", "/fleet/v1/machines")
            .json(r#"[{"op":"add","path":"/not-a-machine/metadata/k","value":"v"}]"#),
    );
    reply.assert_empty(204);
    assert_eq!(
        registry(&flt).get(&format!("{PREFIX}/machines/not-a-machine/metadata/k")),
        Some(&"v".to_string())
    );
    assert!(!machines("/flt/v1").contains_key("not-a-machine"));

    // TestMachinesPatchDelete: removing keys (existing or not) leaves tombstones, not listed.
    patch(&format!(
        r#"[{{"op":"remove","path":"/{m0}/metadata/foo"}},
            {{"op":"remove","path":"/{m0}/metadata/a.b-c_d"}},
            {{"op":"remove","path":"/{m1}/metadata/ping"}},
            {{"op":"remove","path":"/{m1}/metadata/never-set"}}]"#
    ))
    .assert_empty(204);
    assert_eq!(metadata(&m0), None);
    assert_eq!(metadata(&m1), None);
    assert_eq!(
        registry(&flt).get(&format!("{PREFIX}/machines/{m1}/metadata/never-set")),
        Some(&String::new()),
        "remove writes an empty tombstone"
    );

    // TestMachinesPatchBad, and more: all ops are checked before any is applied.
    let before = registry(&flt);
    let good = format!(r#"{{"op":"add","path":"/{m0}/metadata/good","value":"yes"}}"#);
    for (body, message) in [
        (
            format!(r#"[{good},{{"op":"noop","path":"/{m0}/metadata/foo","value":"x"}}]"#),
            "invalid op: expect add, remove, or replace",
        ),
        (
            format!(r#"[{good},{{"op":"ADD","path":"/{m0}/metadata/foo","value":"x"}}]"#),
            "invalid op: expect add, remove, or replace",
        ),
        (
            format!(r#"[{good},{{"op":"add","path":"/{m0}/foo","value":"x"}}]"#),
            "machine metadata path invalid",
        ),
        (
            format!(r#"[{good},{{"op":"add","path":"/{m0}/metadata/foo","value":""}}]"#),
            "invalid value: add and replace require a value",
        ),
        (
            format!(r#"[{good},{{"op":"replace","path":"/{m0}/metadata/foo"}}]"#),
            "invalid value: add and replace require a value",
        ),
        (
            format!(r#"[{good},{{"op":"add","path":"/{m0}/metadata/a/b","value":"x"}}]"#),
            "machine metadata path invalid",
        ),
        (
            format!(r#"[{good},{{"op":"add","path":"/{m0}/metadata/sp ace","value":"x"}}]"#),
            "machine metadata path invalid",
        ),
        (
            format!(r#"[{good},{{"op":"add","path":"//metadata/x","value":"x"}}]"#),
            "machine metadata path invalid",
        ),
        (
            format!(r#"[{good},{{"op":"add","path":"/../metadata/x","value":"x"}}]"#),
            "machine metadata path invalid",
        ),
        (
            format!(r#"[{good},{{"op":"add","path":"/./metadata/x","value":"x"}}]"#),
            "machine metadata path invalid",
        ),
        (
            format!(r#"[{good},{{"op":"add","path":"/{m0}/metadata/..","value":"x"}}]"#),
            "machine metadata path invalid",
        ),
    ] {
        let reply = patch(&body);
        reply.assert_error(400, message);
        assert_eq!(registry(&flt), before, "registry changed by {reply}");
    }
    for (body, check) in [
        (
            r#"{"op":"add"}"#,
            "cannot unmarshal object into Go value of type []api.machineMetadataOp",
        ),
        (
            r#"[{"op":"add","path":"/x/metadata/y","value":5}]"#,
            "cannot unmarshal number",
        ),
        (r#"[{"op":"add""#, "unexpected EOF"),
        ("", "EOF"),
    ] {
        let reply = patch(body);
        reply.assert_error_with(400, |m| m.contains(check), check);
        assert_eq!(registry(&flt), before, "registry changed by {reply}");
    }
    // An empty list is a no-op success.
    patch("[]").assert_empty(204);

    // A global unit runs on both machines; state filters pick them apart.
    send(
        &flt,
        0,
        Call::new("PUT", "/flt/v1/units/global.service").json(unit_body(
            Some("launched"),
            Some(
                r#"[{"section":"Service","name":"ExecStart","value":"/bin/sleep 100000"},
                    {"section":"X-Fleet","name":"Global","value":"true"}]"#,
            ),
        )),
    )
    .assert_empty(201);
    let all = wait_json(
        &flt,
        "global.service state on both machines",
        "/flt/v1/state",
        |p| {
            p["states"].as_array().is_some_and(|s| {
                s.len() == 2 && s.iter().all(|s| s["systemdActiveState"] == json!("active"))
            })
        },
    );
    let states = all["states"].as_array().unwrap().clone();
    let on: Vec<&Value> = states.iter().map(|s| &s["machineID"]).collect();
    let mut expected = vec![json!(m0), json!(m1)];
    expected.sort_by_key(|v| v.to_string());
    let mut seen: Vec<Value> = on.into_iter().cloned().collect();
    seen.sort_by_key(|v| v.to_string());
    assert_eq!(seen, expected, "{all}");
    for id in [&m0, &m1] {
        let page = get(&flt, &format!("/flt/v1/state?machineID={id}")).json();
        let one = page["states"].as_array().cloned().unwrap_or_default();
        assert_eq!(one.len(), 1, "{page}");
        assert_eq!(one[0]["machineID"], json!(id), "{page}");
        assert_eq!(one[0]["name"], json!("global.service"), "{page}");
        let both = get(
            &flt,
            &format!("/fleet/v1/state?unitName=global.service&machineID={id}"),
        )
        .json();
        assert_eq!(both, page);
    }
    assert_eq!(
        get(&flt, "/flt/v1/state?unitName=global.service").json(),
        all
    );
    // GET /state/<name> gives one of them.
    let one = get(&flt, "/flt/v1/state/global.service").json();
    assert!(states.contains(&one), "{one} in {all}");
    // Global units: GET omits machineID and currentState; the list says "inactive" (fleet).
    let unit = get(&flt, "/flt/v1/units/global.service").json();
    assert_eq!(unit.get("machineID"), None, "{unit}");
    assert_eq!(unit.get("currentState"), None, "{unit}");
    let listed = get(&flt, "/flt/v1/units").json();
    assert_eq!(
        listed["units"][0]["currentState"],
        json!("inactive"),
        "{listed}"
    );
    assert_eq!(listed["units"][0].get("machineID"), None, "{listed}");
    println!(
        "machines_state_and_metadata: checks took {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// Pagination over 250 units on every list, and bad input: each refused request names the
/// problem and leaves the registry (and the host) untouched.
#[test]
fn pagination_and_bad_input() {
    if !flt_tests::testhost::require_hosts() {
        return;
    }
    let flt = FltCluster::start(FltClusterConfig::new(1));
    let started = Instant::now();
    bad_input(&flt);
    pagination(&flt);
    println!(
        "pagination_and_bad_input: checks took {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

fn bad_input(flt: &FltCluster) {
    let before = registry(flt);
    assert!(
        before.keys().any(|k| k.contains("/machines/")),
        "the snapshot sees the registry: {before:#?}"
    );
    let files_before = unit_files(flt, 0);
    let check_unchanged = |reply: &Reply| {
        assert_eq!(registry(flt), before, "registry changed by {reply}");
        assert_eq!(
            unit_files(flt, 0),
            files_before,
            "unit file written by {reply}"
        );
    };
    let good = unit_body(Some("launched"), Some(SLEEP_OPTIONS));
    let path = "/flt/v1/units/bad.service";

    // Malformed JSON: 400 with the decoder's message.
    for (body, message) in [
        (
            r#"{"desiredState":"#,
            "unable to decode body: unexpected EOF",
        ),
        ("", "unable to decode body: EOF"),
        (
            "{'a':1}",
            "unable to decode body: key must be a string at line 1 column 2",
        ),
        (
            "[]",
            "unable to decode body: json: cannot unmarshal array into Go value of type schema.Unit",
        ),
        (
            r#"{"options":"x"}"#,
            "unable to decode body: json: cannot unmarshal string into Go struct field Unit.options of type []*schema.UnitOption",
        ),
        (
            r#"{"desiredState":5,"options":[]}"#,
            "unable to decode body: json: cannot unmarshal number into Go struct field Unit.desiredState of type string",
        ),
        (
            r#"{"options":[null]}"#,
            "unable to decode body: json: null in unit options",
        ),
    ] {
        let reply = put(flt, path, body);
        reply.assert_error(400, message);
        check_unchanged(&reply);
    }

    // Only the first JSON value counts (Go's decoder): trailing bytes are ignored.
    let reply = put(flt, path, r#"{"desiredState":"launched"} trailing"#);
    reply.assert_error(409, "unit does not exist and options field empty");
    check_unchanged(&reply);

    // Content types (PUT only, as fleet): exactly one, application/json (parameters allowed).
    for (headers, message) in [
        (vec![], "expected 1 Content-Type, got 0"),
        (
            vec![
                "Content-Type: application/json",
                "Content-Type: application/json",
            ],
            "expected 1 Content-Type, got 2",
        ),
        (
            vec!["Content-Type: text/plain"],
            "only acceptable Content-Type is application/json",
        ),
        (
            vec!["Content-Type: application/jsonx"],
            "only acceptable Content-Type is application/json",
        ),
        (
            vec!["Content-Type: application/x-www-form-urlencoded"],
            "only acceptable Content-Type is application/json",
        ),
    ] {
        let mut call = Call::new("PUT", path).body(good.clone());
        // curl adds a form content type to --data-binary unless told not to.
        call = call.header("Content-Type:");
        for header in headers {
            call = call.header(header);
        }
        let reply = send(flt, 0, call);
        reply.assert_error(415, message);
        check_unchanged(&reply);
    }
    // A parameter is fine: this one gets past the content type to the name check.
    let reply = send(
        flt,
        0,
        Call::new("PUT", "/flt/v1/units/bad.nothing")
            .header("Content-Type: application/json; charset=utf-8")
            .body(good.clone()),
    );
    reply.assert_error(400, r#"invalid unit type: "nothing""#);
    check_unchanged(&reply);

    // Bodies over 1 MiB: 413, with or without a Content-Length; exactly 1 MiB is read.
    let padded = |size: usize| {
        let mut body = good.clone();
        body.push_str(&" ".repeat(size - body.len()));
        body
    };
    let too_large = "request body too large: the limit is 1048576 bytes";
    for call in [
        Call::new("PUT", path).json(padded(BODY_LIMIT + 1)),
        Call::new("PUT", path).json(padded(4 * BODY_LIMIT)),
        Call::new("PUT", path)
            .json(padded(BODY_LIMIT + 1))
            .header("Transfer-Encoding: chunked"),
        Call::new("PATCH", "/flt/v1/machines").json(format!(
            r#"[{{"op":"add","path":"/x/metadata/big","value":"{}"}}]"#,
            "x".repeat(BODY_LIMIT)
        )),
    ] {
        let reply = send(flt, 0, call);
        reply.assert_error(413, too_large);
        check_unchanged(&reply);
    }
    let reply = send(
        flt,
        0,
        Call::new("PUT", "/flt/v1/units/bad.nothing").json(padded(BODY_LIMIT)),
    );
    reply.assert_error(400, r#"invalid unit type: "nothing""#);
    check_unchanged(&reply);

    // Unit names (spec §5.1), all refused before the registry is looked at.
    let long = format!("{}.service", "a".repeat(250));
    for (name, message) in [
        ("bad%00.service", r"invalid character '\x00' in unit name"),
        ("a%20b.service", "invalid character ' ' in unit name"),
        ("a%5Cb%24.service", r"invalid character '$' in unit name"),
        ("noext", r#"unit name must contain ".""#),
        ("ends.", r#"unit name cannot end in ".""#),
        ("x.exe", r#"invalid unit type: "exe""#),
        ("x.SERVICE", r#"invalid unit type: "SERVICE""#),
        ("t@.mount", r#"invalid unit type for template: "mount""#),
        ("%40x.service", r#"unit name cannot start in "@""#),
        (long.as_str(), "unit name exceeds maximum length (256)"),
    ] {
        let reply = put(flt, &format!("/flt/v1/units/{name}"), &good);
        reply.assert_error(400, message);
        check_unchanged(&reply);
    }
    // Names that are not one path segment never reach a handler.
    for path in [
        "/flt/v1/units/a/b.service",
        "/flt/v1/units/a%2Fb.service",
        "/flt/v1/units/",
    ] {
        let reply = put(flt, path, &good);
        reply.assert_error(404, "");
        check_unchanged(&reply);
    }
    // Dot segments are cleaned and redirected (never a unit named "../x.service").
    for path in [
        "/flt/v1/units/../x.service",
        "/flt/v1/units/%2E%2E%2Fx.service",
    ] {
        let reply = put(flt, path, &good);
        assert_eq!(reply.status, 301, "{reply}");
        assert_eq!(
            reply.header("Location"),
            Some("/flt/v1/x.service"),
            "{reply}"
        );
        check_unchanged(&reply);
    }
    let reply = put(flt, "/flt/v1/units/bad%zz.service", &good);
    reply.assert_error(400, "invalid URL escape in path");
    check_unchanged(&reply);
    // Reads and deletes of such names are plain 404s.
    for name in ["bad%00.service", "noext", "..."] {
        get(flt, &format!("/flt/v1/units/{name}")).assert_error(404, "unit does not exist");
        let reply = send(flt, 0, Call::new("DELETE", format!("/flt/v1/units/{name}")));
        reply.assert_error(404, "unit does not exist");
        check_unchanged(&reply);
    }
    // The body's name is checked against the URL's before the rules.
    let reply = put(
        flt,
        path,
        r#"{"name":"../x.service","desiredState":"launched"}"#,
    );
    reply.assert_error(
        400,
        r#"name in URL "bad.service" differs from unit name in request body "../x.service""#,
    );
    check_unchanged(&reply);

    // Desired states on create (fleet answered 500 for these).
    for state in ["running", "Launched", "inactive ", "null"] {
        let reply = put(flt, path, &unit_body(Some(state), Some(SLEEP_OPTIONS)));
        reply.assert_error(
            400,
            &format!(r#"invalid desiredState "{state}": expected inactive, loaded or launched"#),
        );
        check_unchanged(&reply);
    }

    // Options that contradict each other.
    let reply = put(
        flt,
        path,
        &unit_body(
            Some("launched"),
            Some(
                r#"[{"section":"Service","name":"ExecStart","value":"/bin/true"},
                    {"section":"X-Fleet","name":"MachineOf","value":"peer.service"},
                    {"section":"X-Fleet","name":"Conflicts","value":"peer.service"}]"#,
            ),
        ),
    );
    reply.assert_error_with(
        400,
        |m| m.starts_with("unresolvable requirements") && m.contains("peer.service"),
        "unresolvable requirements naming peer.service",
    );
    check_unchanged(&reply);

    // Bad page tokens, on every list.
    for list in [
        "/flt/v1/units",
        "/flt/v1/state",
        "/flt/v1/machines",
        "/fleet/v1/units",
    ] {
        for (token, message) in [
            ("EwBMLg%3D%3D", "token limit must be 100"),
            ("ZAAAAA%3D%3D", "token page must be greater than zero"),
            ("%21%21%21%21", "illegal base64 data at input byte 0"),
            ("ZAA%3D", "unexpected EOF"),
            ("", "EOF"),
            (
                "ZAACAA%3D%3D&nextPageToken=ZAACAA%3D%3D",
                "too many values for page token",
            ),
        ] {
            let reply = get(flt, &format!("{list}?nextPageToken={token}"));
            reply.assert_error(400, message);
        }
    }
    assert_eq!(registry(flt), before);
}

fn pagination(flt: &FltCluster) {
    // 250 inactive units (not scheduled), created inside the host in one shell loop.
    let script = format!(
        r#"for i in $(seq -w 0 249); do
             curl -sS -o /dev/null -w '%{{http_code}}\n' --unix-socket {API_SOCKET} -X PUT \
               -H 'Content-Type: application/json' \
               --data-binary "{{\"options\":[{{\"section\":\"Service\",\"name\":\"ExecStart\",\"value\":\"/bin/sleep $i\"}}]}}" \
               "http://flt/flt/v1/units/page-$i.service"
           done"#
    );
    let out = flt.exec(0, &["sh", "-c", &script]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout, "201\n".repeat(250), "{out}");
    let expected: Vec<String> = (0..250).map(|i| format!("page-{i:03}.service")).collect();
    for list in ["/flt/v1/units", "/fleet/v1/units"] {
        let mut names = Vec::new();
        let mut sizes = Vec::new();
        let mut tokens = Vec::new();
        let mut url = list.to_string();
        loop {
            let reply = get(flt, &url);
            assert_eq!(reply.status, 200, "{reply}");
            let page = reply.json();
            let units = page["units"].as_array().cloned().unwrap_or_default();
            sizes.push(units.len());
            for unit in &units {
                assert_eq!(unit["desiredState"], json!("inactive"), "{unit}");
                names.push(unit["name"].as_str().unwrap_or_default().to_string());
            }
            match page["nextPageToken"].as_str() {
                Some(token) => {
                    tokens.push(token.to_string());
                    url = format!("{list}?nextPageToken={}", token.replace('=', "%3D"));
                }
                None => break,
            }
            assert!(sizes.len() < 10, "no end to the pages: {sizes:?}");
        }
        assert_eq!(sizes, [100, 100, 50], "{list}");
        assert_eq!(tokens, ["ZAACAA==", "ZAADAA=="], "{list}");
        assert_eq!(names, expected, "{list}: every unit once, in order");
    }
    // Forged tokens: a page past the end is empty; the 4 bytes may be followed by more.
    let empty = get(flt, "/flt/v1/units?nextPageToken=ZAAEAA%3D%3D");
    assert_eq!((empty.status, empty.body.as_str()), (200, "{}"), "{empty}");
    let far = get(flt, "/flt/v1/units?nextPageToken=ZAD__w%3D%3D");
    assert_eq!((far.status, far.body.as_str()), (200, "{}"), "{far}");
    // Exactly-full pages still carry a token (fleet's quirk): 300 units → 100,100,100,{}.
    let script = format!(
        r#"for i in $(seq 250 299); do
             curl -sS -o /dev/null -w '%{{http_code}}\n' --unix-socket {API_SOCKET} -X PUT \
               -H 'Content-Type: application/json' \
               --data-binary "{{\"options\":[{{\"section\":\"Service\",\"name\":\"ExecStart\",\"value\":\"/bin/sleep $i\"}}]}}" \
               "http://flt/flt/v1/units/page-$i.service"
           done"#
    );
    let out = flt.exec(0, &["sh", "-c", &script]);
    assert_eq!(out.stdout, "201\n".repeat(50), "{out}");
    let third = get(flt, "/flt/v1/units?nextPageToken=ZAADAA%3D%3D").json();
    assert_eq!(
        third["units"].as_array().map(Vec::len),
        Some(100),
        "{third}"
    );
    assert_eq!(third["nextPageToken"], json!("ZAAEAA=="), "{third}");
    let fourth = get(flt, "/flt/v1/units?nextPageToken=ZAAEAA%3D%3D");
    assert_eq!(fourth.body, "{}", "{fourth}");
    // The machines list is one page with one machine.
    let machines = get(flt, "/flt/v1/machines").json();
    assert_eq!(
        machines["machines"].as_array().map(Vec::len),
        Some(1),
        "{machines}"
    );
    assert_eq!(machines.get("nextPageToken"), None, "{machines}");
}
