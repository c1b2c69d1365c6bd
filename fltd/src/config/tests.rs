use super::*;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load(file: &str) -> Result<Loaded, ConfigError> {
    Config::load(Some(file), &BTreeMap::new())
}

fn config(file: &str) -> Config {
    load(file).unwrap().config
}

fn invalid(file: &str) -> ConfigError {
    load(file).unwrap_err()
}

fn reason_of(err: &ConfigError) -> (&'static str, String) {
    match err {
        ConfigError::InvalidValue { option, reason, .. } => (option, reason.clone()),
        other => panic!("expected InvalidValue, got {other:?}"),
    }
}

#[test]
fn defaults() {
    let c = Config::load(None, &BTreeMap::new()).unwrap();
    assert!(c.warnings.is_empty());
    let c = c.config;
    assert_eq!(c, Config::default());
    assert_eq!(c.verbosity, 0);
    assert_eq!(
        c.etcd_servers,
        ["http://127.0.0.1:2379", "http://127.0.0.1:4001"]
    );
    assert_eq!(c.etcd_key_prefix, "/_coreos.com/flt/");
    assert_eq!(c.etcd_request_timeout, Duration::from_secs(1));
    assert_eq!(c.engine_reconcile_interval, Duration::from_secs(2));
    assert_eq!(c.public_ip, None);
    assert!(c.metadata.is_empty());
    assert_eq!(c.agent_ttl, Duration::from_secs(30));
    assert_eq!(c.units_directory, PathBuf::from("/run/flt/units/"));
    assert!(!c.systemd_user && !c.disable_engine && !c.disable_watches && !c.enable_grpc);
    assert_eq!(c.token_limit, 100);
    assert_eq!(
        c.listen,
        [ListenAddr::Unix(PathBuf::from("/var/run/flt.sock"))]
    );
    assert_eq!(c.listen[0].to_string(), "unix:///var/run/flt.sock");
}

#[test]
fn every_option_from_the_file() {
    let c = config(
        "verbosity=2
etcd_servers=http://10.0.0.1:2379,https://10.0.0.2:2379
etcd_username=root
etcd_password=secret
etcd_keyfile=/k.pem
etcd_certfile=/c.pem
etcd_cafile=/ca.pem
etcd_key_prefix=/custom/
etcd_request_timeout=2.5
engine_reconcile_interval=0.5
public_ip=172.17.8.101
metadata=region=us-west,disk=ssd
agent_ttl=1m30s
units_directory=/var/lib/flt/units
systemd_user=true
token_limit=50
disable_engine=1
disable_watches=T
enable_grpc=false
listen=unix:///run/a.sock, tcp://127.0.0.1:54728
",
    );
    assert_eq!(c.verbosity, 2);
    assert_eq!(
        c.etcd_servers,
        ["http://10.0.0.1:2379", "https://10.0.0.2:2379"]
    );
    assert_eq!(
        (c.etcd_username.as_str(), c.etcd_password.as_str()),
        ("root", "secret")
    );
    assert_eq!(
        (
            c.etcd_keyfile.as_str(),
            c.etcd_certfile.as_str(),
            c.etcd_cafile.as_str()
        ),
        ("/k.pem", "/c.pem", "/ca.pem")
    );
    assert_eq!(c.etcd_key_prefix, "/custom/");
    assert_eq!(c.etcd_request_timeout, Duration::from_millis(2500));
    assert_eq!(c.engine_reconcile_interval, Duration::from_millis(500));
    assert_eq!(c.public_ip, Some("172.17.8.101".parse().unwrap()));
    assert_eq!(c.metadata, env(&[("disk", "ssd"), ("region", "us-west")]));
    assert_eq!(c.agent_ttl, Duration::from_secs(90));
    assert_eq!(c.units_directory, PathBuf::from("/var/lib/flt/units"));
    assert!(c.systemd_user && c.disable_engine && c.disable_watches && !c.enable_grpc);
    assert_eq!(c.token_limit, 50);
    assert_eq!(
        c.listen,
        [
            ListenAddr::Unix(PathBuf::from("/run/a.sock")),
            ListenAddr::Tcp("127.0.0.1:54728".into())
        ]
    );
}

#[test]
fn ini_syntax_quotes_comments_and_case() {
    let c = config(
        "# a comment
; another comment
   ETCD_KEY_PREFIX = \"/quoted # not a comment/\"
Public_IP='10.1.2.3'
etcd_username = bare value # trailing comment
etcd_password=pw;comment

\tverbosity\t=\t3\t
",
    );
    assert_eq!(c.etcd_key_prefix, "/quoted # not a comment/");
    assert_eq!(c.public_ip, Some("10.1.2.3".parse().unwrap()));
    assert_eq!(c.etcd_username, "bare value");
    assert_eq!(c.etcd_password, "pw");
    assert_eq!(c.verbosity, 3);
}

#[test]
fn ini_value_edge_cases() {
    // An empty value, and a value that is only a comment, are empty.
    assert_eq!(config("etcd_username=").etcd_username, "");
    assert_eq!(config("etcd_username=   ; nothing").etcd_username, "");
    // Mismatched or inner quotes are kept, as goini's bare-value rule keeps them.
    assert_eq!(
        config("etcd_username=\"a\" \"b\"").etcd_username,
        "\"a\" \"b\""
    );
    assert_eq!(config("etcd_username=\"open").etcd_username, "\"open");
    assert_eq!(config("etcd_username='it''s'").etcd_username, "'it''s'");
    // The last of repeated keys wins.
    assert_eq!(config("verbosity=1\nverbosity=4").verbosity, 4);
    // CRLF line ends.
    assert_eq!(config("verbosity=1\r\ntoken_limit=7\r\n").token_limit, 7);
}

#[test]
fn trailing_backslash_joins_lines() {
    let c = config("metadata=a=1,\\\n    b=2,\\\n\tc=3\nverbosity=1\n");
    assert_eq!(c.metadata, env(&[("a", "1"), ("b", "2"), ("c", "3")]));
    assert_eq!(c.verbosity, 1);
    // A comment line continued swallows the next line too.
    assert_eq!(config("# note \\\nverbosity=9\n").verbosity, 0);
    assert_eq!(
        invalid("verbosity=1\nmetadata=a=1,\\").to_string(),
        "iniparser: the line continued with '\\' at ':2' runs past the end of the file"
    );
}

#[test]
fn syntax_errors_name_the_line_like_goini() {
    for (file, line) in [
        ("no equals sign", 1),
        ("verbosity=1\n\n[ok]\nkey: value\n", 4),
        ("=value", 1),
        ("verbosity = 1\nbad key = 2", 2),
        ("[unclosed\n", 1),
    ] {
        let err = invalid(file);
        assert_eq!(err, ConfigError::Syntax { line }, "{file:?}");
        assert_eq!(
            err.to_string(),
            format!("iniparser: syntax error at ':{line}'.")
        );
    }
    // A line continued from line 1 that is bad is reported at line 1.
    assert_eq!(invalid("bad \\\nline"), ConfigError::Syntax { line: 1 });
}

#[test]
fn sections_are_ignored_with_a_warning() {
    let loaded = load("verbosity=1\n[Extra]\nverbosity=5\n[]\ntoken_limit=9\n").unwrap();
    assert_eq!(loaded.config.verbosity, 1);
    // `[]` returns to the top level.
    assert_eq!(loaded.config.token_limit, 9);
    assert_eq!(
        loaded.warnings,
        [
            "Config option verbosity in section [extra] (line 3) is ignored: options must be top-level"
        ]
    );
}

#[test]
fn unknown_and_deprecated_options_warn() {
    let loaded = load("verify_units=true\nauthorized_keys_file=/x\nbogus=1\n").unwrap();
    assert_eq!(loaded.config, Config::default());
    assert_eq!(
        loaded.warnings,
        [
            "Unknown config option bogus (line 3) - ignoring",
            "Config option verify_units is no longer supported - ignoring",
            "Config option authorized_keys_file is no longer supported - ignoring",
        ]
    );
    let loaded = Config::load(None, &env(&[("FLT_VERIFY_UNITS", "true")])).unwrap();
    assert_eq!(
        loaded.warnings,
        ["Config option verify_units is no longer supported - ignoring"]
    );
    let loaded = load("enable_grpc=true").unwrap();
    assert!(loaded.config.enable_grpc);
    assert_eq!(
        loaded.warnings,
        ["Config option enable_grpc is not supported by flt - ignoring"]
    );
}

#[test]
fn environment_overrides_the_file() {
    let vars = env(&[
        ("FLT_VERBOSITY", "7"),
        ("FLT_METADATA", "role=db"),
        ("FLT_AGENT_TTL", ""), // empty: ignored
        (
            "FLT_ETCD_SERVERS",
            "[\"http://e1:2379\", \"http://e2:2379\"]",
        ),
        ("FLEET_TOKEN_LIMIT", "5"),   // fleet's prefix is not ours
        ("flt_public_ip", "1.2.3.4"), // names are upper-case
    ]);
    let c = Config::load(Some("verbosity=1\nagent_ttl=10s\nmetadata=a=b"), &vars)
        .unwrap()
        .config;
    assert_eq!(c.verbosity, 7);
    assert_eq!(c.metadata, env(&[("role", "db")]));
    assert_eq!(c.agent_ttl, Duration::from_secs(10));
    assert_eq!(c.etcd_servers, ["http://e1:2379", "http://e2:2379"]);
    assert_eq!(c.token_limit, 100);
    assert_eq!(c.public_ip, None);
    for option in OPTIONS {
        // Every option has an override variable.
        let var = format!("FLT_{}", option.to_uppercase());
        let bad = Config::load(None, &env(&[(var.as_str(), "\u{1}bad")]));
        let text_option = matches!(
            *option,
            "etcd_username"
                | "etcd_password"
                | "etcd_keyfile"
                | "etcd_certfile"
                | "etcd_cafile"
                | "etcd_key_prefix"
        );
        assert_eq!(bad.is_err(), !text_option, "{option}");
    }
}

#[test]
fn invalid_values_are_errors_naming_option_and_value() {
    let err = invalid("verbosity=1\ntoken_limit=lots\n");
    assert_eq!(
        err.to_string(),
        "invalid value \"lots\" for config option token_limit (from config file line 2): expected an integer"
    );
    let err = Config::load(None, &env(&[("FLT_AGENT_TTL", "30")])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid value \"30\" for config option agent_ttl (from environment variable FLT_AGENT_TTL): time: missing unit in duration \"30\""
    );
    for (file, option) in [
        ("verbosity=high", "verbosity"),
        ("etcd_servers=127.0.0.1:2379", "etcd_servers"),
        ("etcd_servers=http://a:1,,http://b:2", "etcd_servers"),
        ("etcd_servers=http://", "etcd_servers"),
        ("etcd_request_timeout=soon", "etcd_request_timeout"),
        ("etcd_request_timeout=0", "etcd_request_timeout"),
        ("etcd_request_timeout=-1", "etcd_request_timeout"),
        ("engine_reconcile_interval=NaN", "engine_reconcile_interval"),
        ("engine_reconcile_interval=inf", "engine_reconcile_interval"),
        ("public_ip=my-host", "public_ip"),
        ("metadata=region", "metadata"),
        ("metadata==v", "metadata"),
        ("agent_ttl=0", "agent_ttl"),
        ("agent_ttl=-5s", "agent_ttl"),
        ("agent_ttl=5 s", "agent_ttl"),
        ("units_directory=relative/dir", "units_directory"),
        ("systemd_user=yes", "systemd_user"),
        ("token_limit=0", "token_limit"),
        ("token_limit=65536", "token_limit"),
        ("token_limit=-1", "token_limit"),
        ("disable_engine=on", "disable_engine"),
        ("disable_watches=2", "disable_watches"),
        ("enable_grpc=maybe", "enable_grpc"),
        ("listen=/var/run/flt.sock", "listen"),
        ("listen=unix://var/run/flt.sock", "listen"),
        ("listen=tcp://localhost", "listen"),
        ("listen=tcp://:80", "listen"),
        ("listen=tcp://h:0", "listen"),
        ("listen=tcp://h:99999", "listen"),
    ] {
        let err = invalid(file);
        let (got, _) = reason_of(&err);
        assert_eq!(got, option, "{file}");
        let value = file.split_once('=').unwrap().1;
        assert!(err.to_string().contains(&format!("{value:?}")), "{err}");
    }
}

#[test]
fn etcd_servers_strip_list_punctuation() {
    assert_eq!(
        config(r#"etcd_servers=["http://a:2379", "https://b:2379"]"#).etcd_servers,
        ["http://a:2379", "https://b:2379"]
    );
    assert_eq!(
        config(r#"etcd_servers=[ "http://a:2379" ]"#).etcd_servers,
        ["http://a:2379"]
    );
}

#[test]
fn metadata_parsing() {
    let c = config("metadata= region = us , disk=ssd,,region=eu, empty= ,x=a=b");
    assert_eq!(
        c.metadata,
        env(&[
            ("disk", "ssd"),
            ("empty", ""),
            ("region", "eu"),
            ("x", "a=b")
        ])
    );
    assert!(config("metadata=").metadata.is_empty());
}

#[test]
fn integers_follow_go_flag_syntax() {
    assert_eq!(parse_go_int("42"), Ok(42));
    assert_eq!(parse_go_int("-3"), Ok(-3));
    assert_eq!(parse_go_int("+3"), Ok(3));
    assert_eq!(parse_go_int("0x1f"), Ok(31));
    assert_eq!(parse_go_int("0o17"), Ok(15));
    assert_eq!(parse_go_int("017"), Ok(15));
    assert_eq!(parse_go_int("0b101"), Ok(5));
    assert_eq!(parse_go_int("0"), Ok(0));
    for bad in ["", "-", "0x", "1.0", "--1", "+-1", "08", "1e3", " 1"] {
        assert!(parse_go_int(bad).is_err(), "{bad:?}");
    }
    // Underscores between digits, as Go ≥ 1.13 allows (cases checked against Go 1.19).
    assert_eq!(parse_go_int("1_000"), Ok(1000));
    assert_eq!(parse_go_int("0x_b"), Ok(11));
    assert_eq!(parse_go_int("0_1"), Ok(1));
    assert_eq!(parse_go_int("+83_00"), Ok(8300));
    for bad in ["_1", "1_", "1__0", "0x_", "-_1"] {
        assert!(parse_go_int(bad).is_err(), "{bad:?}");
    }
    assert!(parse_go_int("9223372036854775808").is_err());
    assert_eq!(parse_go_int("-9223372036854775808"), Ok(i64::MIN));
}

#[test]
fn booleans_follow_go_parse_bool() {
    for t in ["1", "t", "T", "TRUE", "true", "True"] {
        assert_eq!(parse_go_bool(t), Ok(true));
    }
    for f in ["0", "f", "F", "FALSE", "false", "False"] {
        assert_eq!(parse_go_bool(f), Ok(false));
    }
    for bad in ["yes", "tRUE", "", "on"] {
        assert!(parse_go_bool(bad).is_err());
    }
}

#[test]
fn durations_follow_go_parse_duration() {
    let ms = Duration::from_millis;
    assert_eq!(parse_go_duration("30s"), Ok(ms(30_000)));
    assert_eq!(parse_go_duration("1m30s"), Ok(ms(90_000)));
    assert_eq!(parse_go_duration("500ms"), Ok(ms(500)));
    assert_eq!(parse_go_duration("1.5h"), Ok(ms(5_400_000)));
    assert_eq!(parse_go_duration(".5s"), Ok(ms(500)));
    assert_eq!(parse_go_duration("1.s"), Ok(ms(1000)));
    assert_eq!(parse_go_duration("+2s"), Ok(ms(2000)));
    assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
    assert_eq!(parse_go_duration("-0"), Ok(Duration::ZERO));
    assert_eq!(parse_go_duration("1us"), Ok(Duration::from_micros(1)));
    assert_eq!(parse_go_duration("1µs"), Ok(Duration::from_micros(1)));
    assert_eq!(parse_go_duration("1μs"), Ok(Duration::from_micros(1)));
    assert_eq!(parse_go_duration("3ns"), Ok(Duration::from_nanos(3)));
    assert_eq!(parse_go_duration("1h2m3s4ms"), Ok(ms(3_723_004)));
    assert_eq!(
        parse_go_duration("0.000000001s"),
        Ok(Duration::from_nanos(1))
    );
    assert_eq!(
        parse_go_duration("30").unwrap_err(),
        "time: missing unit in duration \"30\""
    );
    assert_eq!(
        parse_go_duration("3d").unwrap_err(),
        "time: unknown unit \"d\" in duration \"3d\""
    );
    assert_eq!(
        parse_go_duration("").unwrap_err(),
        "time: invalid duration \"\""
    );
    for bad in ["s", ".s", "-", "1s ", "1..5s", "99999999999999999999h"] {
        assert!(parse_go_duration(bad).is_err(), "{bad:?}");
    }
    assert!(parse_go_duration("2562047h").is_ok());
    assert!(parse_go_duration("2562048h").is_err());
    assert_eq!(
        parse_go_duration("-1s").unwrap_err(),
        "must not be negative"
    );
}

#[test]
fn listen_addresses() {
    assert_eq!(
        config("listen=tcp://[::1]:8080,unix:///run/x.sock").listen,
        [
            ListenAddr::Tcp("[::1]:8080".into()),
            ListenAddr::Unix(PathBuf::from("/run/x.sock"))
        ]
    );
    assert_eq!(
        ListenAddr::Tcp("0.0.0.0:1".into()).to_string(),
        "tcp://0.0.0.0:1"
    );
    assert!(config("listen=").listen.is_empty());
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn command_line() {
    let run = |p: Option<&str>| Invocation::Run {
        config_file: p.map(PathBuf::from),
    };
    assert_eq!(parse_args("fltd", &args(&[])), Ok(run(None)));
    // The functional tests run `fleetd -config /opt/fleet/fleet.conf`.
    assert_eq!(
        parse_args("fltd", &args(&["-config", "/opt/flt/flt.conf"])),
        Ok(run(Some("/opt/flt/flt.conf")))
    );
    assert_eq!(
        parse_args("fltd", &args(&["--config=/a.conf"])),
        Ok(run(Some("/a.conf")))
    );
    for v in [
        &["-version"][..],
        &["--version"],
        &["version"],
        &["-version=true"],
    ] {
        assert_eq!(
            parse_args("fltd", &args(v)),
            Ok(Invocation::Version),
            "{v:?}"
        );
    }
    assert_eq!(
        parse_args("fltd", &args(&["-version=false"])),
        Ok(run(None))
    );
    assert_eq!(parse_args("fltd", &args(&["-h"])), Ok(Invocation::Help));
    assert_eq!(parse_args("fltd", &args(&["--help"])), Ok(Invocation::Help));
}

#[test]
fn command_line_errors() {
    let e = parse_args("/usr/bin/fltd", &args(&["start"])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/usr/bin/fltd takes no arguments. Did you mean to invoke fltctl instead?"
    );
    assert_eq!(e.exit_code(), 1);
    // Flags stop at the first positional argument; `version` must be alone.
    assert!(matches!(
        parse_args("fltd", &args(&["version", "-config", "x"])),
        Err(ArgsError::Positional { .. })
    ));
    assert!(matches!(
        parse_args("fltd", &args(&["--", "-config"])),
        Err(ArgsError::Positional { .. })
    ));
    let e = parse_args("fltd", &args(&["-verbosity=2"])).unwrap_err();
    assert_eq!(e.to_string(), "flag provided but not defined: -verbosity");
    assert_eq!(e.exit_code(), 2);
    assert_eq!(
        parse_args("fltd", &args(&["-config"]))
            .unwrap_err()
            .to_string(),
        "flag needs an argument: -config"
    );
    assert_eq!(
        parse_args("fltd", &args(&["-version=yes"]))
            .unwrap_err()
            .to_string(),
        "invalid boolean value \"yes\" for -version: parse error"
    );
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("fltd-config-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn config_file_resolution() {
    let tmp = TempDir::new("files");
    let file = tmp.0.join("flt.conf");
    std::fs::write(&file, "verbosity=3\n").unwrap();
    let missing = tmp.0.join("missing.conf");

    // An explicit file is read; an explicit missing file or a directory is an error.
    assert_eq!(
        read_config_file(Some(&file), &missing).unwrap(),
        Some((file.clone(), "verbosity=3\n".to_string()))
    );
    let e = read_config_file(Some(&missing), &file).unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "Unable to use config file {}: ",
            missing.display()
        )),
        "{e}"
    );
    let e = read_config_file(Some(&tmp.0), &file).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "Provided config {} is a directory, not a file",
            tmp.0.display()
        )
    );
    // Without -config the default is used if it exists, and its absence is no error.
    assert_eq!(
        read_config_file(None, &file).unwrap(),
        Some((file.clone(), "verbosity=3\n".to_string()))
    );
    assert_eq!(read_config_file(None, &missing).unwrap(), None);
    // A default that exists but is a directory is as unusable as an explicit one.
    assert!(matches!(
        read_config_file(None, &tmp.0),
        Err(ConfigFileError::Directory(_))
    ));
    // End to end: the file's text feeds Config::load.
    let (_, text) = read_config_file(Some(&file), &missing).unwrap().unwrap();
    assert_eq!(config(&text).verbosity, 3);
}
