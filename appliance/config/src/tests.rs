use super::*;

fn parse(text: &str) -> Result<Config, String> {
    Config::from_toml_str(text, "/x.toml").map_err(|err| err.to_string())
}

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|&(var, value)| (var.to_owned(), value.to_owned()))
        .collect()
}

fn from_env(vars: &[(&str, &str)]) -> Result<Config, String> {
    Config::from_env_only(env(vars)).map_err(|err| err.to_string())
}

/// A file with every key set to something other than its default.
const FULL: &str = r#"
[http]
listen = "0.0.0.0:9090"
tls = true

[store]
data_dir = "/var/lib/appliance"
cache_capacity = "128MiB"
max_commit_group = 64

[retention]
max_age = "7d 12h"
max_disk = 1000000000
min_free_disk = "512 MiB"
interval = 300

[log]
filter = "info,appliance_store=debug"

[sip]
listen = "0.0.0.0:15060"
platform_id = "44010000002000000009"
domain = "4401000000"
password = ""
heartbeat_interval = "30s"
heartbeat_missed = 2
min_register_expires = 120
max_register_expires = 7200
subscriptions = ["mobile_position"]

[sip.device_passwords]
"44010000001320000001" = "cam-secret"

[media]
rtp_ip = "192.168.1.20"
rtp_ports = "40000-40099"
stream_timeout = "30s"

[uplink]
device_id = "box-0042"
batch = 500
telemetry_interval = "30s"

[uplink.mqtt]
url = "mqtts://cloud.example.com:8883"
topic_prefix = "acme/boxes"
client_id = "box-0042-mqtt"
username = "box"
password = "s3cret"
ca_file = "/etc/appliance/cloud-ca.pem"
client_cert = "/data/keys/box.crt"
client_key = "/data/keys/box.key"
keep_alive = "1m"
media_max_bytes = "4 MiB"

[uplink.kafka]
brokers = "k1.example.com:9093,k2.example.com:9093"
topic = "acme.events"
security_protocol = "sasl_ssl"
sasl_mechanism = "SCRAM-SHA-512"
username = "box"
password = "s3cret"
ca_file = "/etc/appliance/kafka-ca.pem"

[uplink.s3]
endpoint = "https://s3.example.com:9000"
bucket = "acme-media"
region = "eu-west-1"
access_key = "AKIDEXAMPLE"
secret_key = "wJalrXUtnFEMI"
prefix = "acme/boxes"
path_style = false
ca_file = "/etc/appliance/s3-ca.pem"

[vision]
onnxruntime = "/usr/lib/libonnxruntime.so.1.20.0"
providers = ["tensorrt", "cpu"]
intra_threads = 4
decoder = "nvv4l2decoder"
max_batch = 8
queue_per_camera = 3
utc_offset = "+08:00"
snapshot_quality = 90

[device]
provisioning_file = "/media/boot/provision.toml"

[update]
rauc_bus = "unix:path=/run/test-bus"
max_bundle = "512 MiB"
"#;

fn full() -> Config {
    Config {
        http: HttpConfig {
            listen: "0.0.0.0:9090".parse().unwrap(),
            tls: true,
        },
        store: StoreConfig {
            data_dir: "/var/lib/appliance".into(),
            cache_capacity: ByteSize::mib(128),
            max_commit_group: 64,
        },
        retention: RetentionConfig {
            max_age: Duration::from_secs(7 * DAY + 12 * HOUR),
            max_disk: ByteSize(1_000_000_000),
            min_free_disk: ByteSize::mib(512),
            interval: Duration::from_secs(300),
        },
        log: LogConfig {
            filter: "info,appliance_store=debug".into(),
        },
        sip: SipConfig {
            listen: "0.0.0.0:15060".parse().unwrap(),
            platform_id: "44010000002000000009".into(),
            domain: "4401000000".into(),
            password: String::new(),
            device_passwords: [("44010000001320000001".to_string(), "cam-secret".to_string())]
                .into(),
            heartbeat_interval: Duration::from_secs(30),
            heartbeat_missed: 2,
            min_register_expires: 120,
            max_register_expires: 7200,
            subscriptions: vec!["mobile_position".into()],
        },
        media: MediaConfig {
            rtp_ip: Some("192.168.1.20".parse().unwrap()),
            rtp_ports: PortRange {
                first: 40_000,
                last: 40_099,
            },
            stream_timeout: Duration::from_secs(30),
        },
        uplink: UplinkConfig {
            device_id: "box-0042".into(),
            batch: 500,
            telemetry_interval: Duration::from_secs(30),
            mqtt: Some(MqttUplinkConfig {
                url: "mqtts://cloud.example.com:8883".into(),
                topic_prefix: "acme/boxes".into(),
                client_id: "box-0042-mqtt".into(),
                username: "box".into(),
                password: "s3cret".into(),
                ca_file: Some("/etc/appliance/cloud-ca.pem".into()),
                client_cert: Some("/data/keys/box.crt".into()),
                client_key: Some("/data/keys/box.key".into()),
                keep_alive: Duration::from_secs(60),
                media_max_bytes: ByteSize::mib(4),
            }),
            kafka: Some(KafkaUplinkConfig {
                brokers: "k1.example.com:9093,k2.example.com:9093".into(),
                topic: "acme.events".into(),
                security_protocol: "sasl_ssl".into(),
                sasl_mechanism: "SCRAM-SHA-512".into(),
                username: "box".into(),
                password: "s3cret".into(),
                ca_file: Some("/etc/appliance/kafka-ca.pem".into()),
                cert_file: None,
                key_file: None,
            }),
            s3: Some(S3UplinkConfig {
                endpoint: "https://s3.example.com:9000".into(),
                bucket: "acme-media".into(),
                region: "eu-west-1".into(),
                access_key: "AKIDEXAMPLE".into(),
                secret_key: "wJalrXUtnFEMI".into(),
                prefix: "acme/boxes".into(),
                path_style: false,
                ca_file: Some("/etc/appliance/s3-ca.pem".into()),
            }),
        },
        vision: VisionConfig {
            onnxruntime: "/usr/lib/libonnxruntime.so.1.20.0".into(),
            providers: vec!["tensorrt".into(), "cpu".into()],
            intra_threads: 4,
            decoder: "nvv4l2decoder".into(),
            max_batch: 8,
            queue_per_camera: 3,
            utc_offset: "+08:00".into(),
            snapshot_quality: 90,
        },
        device: DeviceConfig {
            provisioning_file: "/media/boot/provision.toml".into(),
        },
        update: UpdateConfig {
            rauc_bus: "unix:path=/run/test-bus".into(),
            max_bundle: ByteSize::mib(512),
        },
    }
}

#[test]
fn vision_values_are_checked() {
    assert_eq!(
        parse("[vision]\nproviders = [\"gpu\"]\n"),
        Err("/x.toml:2:13: vision.providers: unknown execution provider `gpu` (known: tensorrt, cuda, xnnpack, acl, cpu)".into())
    );
    assert_eq!(
        parse("[vision]\nutc_offset = \"8\"\n"),
        Err("/x.toml:2:14: vision.utc_offset: `8`: expected +HH:MM or -HH:MM, at most 14 hours (e.g. `+08:00`)".into())
    );
    assert_eq!(
        parse("[vision]\nmax_batch = 0\n"),
        Err("/x.toml:2:13: vision.max_batch: must be between 1 and 32, got 0".into())
    );
    let config = parse("[vision]\nutc_offset = \"-03:30\"\n").unwrap();
    assert_eq!(config.vision.utc_offset_seconds(), -(3 * 3600 + 30 * 60));
}

#[test]
fn empty_file_is_the_defaults() {
    assert_eq!(parse(""), Ok(Config::default()));
    assert_eq!(parse("[http]\n[store]\n"), Ok(Config::default()));
    assert_eq!(from_env(&[]), Ok(Config::default()));
}

#[test]
fn documented_defaults() {
    let config = Config::default();
    assert_eq!(config.http.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.store.data_dir, Path::new("var"));
    assert_eq!(config.store.cache_capacity.bytes(), 64 * 1024 * 1024);
    assert_eq!(config.store.max_commit_group, 1024);
    assert_eq!(config.retention.max_age.get().as_secs(), 30 * 24 * 3600);
    assert_eq!(config.retention.max_disk.bytes(), 8 * 1024 * 1024 * 1024);
    assert_eq!(config.retention.min_free_disk.bytes(), 1024 * 1024 * 1024);
    assert_eq!(config.sip.listen.to_string(), "0.0.0.0:5060");
    assert_eq!(config.sip.platform_id, "34020000002000000001");
    assert_eq!(config.sip.domain, "3402000000");
    assert!(
        config.sip.password.is_empty(),
        "no shared default device password"
    );
    assert!(config.sip.device_passwords.is_empty());
    assert_eq!(config.sip.heartbeat_interval.get().as_secs(), 60);
    assert_eq!(config.sip.heartbeat_missed, 3);
    assert_eq!(config.retention.interval.get().as_secs(), 60);
    assert_eq!(config.log.filter, "info");
    assert_eq!(config.media.rtp_ip, None, "the address the device reached");
    assert_eq!(config.media.rtp_ports.to_string(), "30000-30499");
    assert_eq!(config.media.stream_timeout.get().as_secs(), 15);
}

#[test]
fn full_file_is_read() {
    assert_eq!(parse(FULL), Ok(full()));
}

#[test]
fn to_toml_string_round_trips() {
    for config in [Config::default(), full()] {
        let text = config.to_toml_string();
        assert_eq!(parse(&text), Ok(config), "{text}");
    }
}

#[test]
fn to_toml_string_writes_every_key() {
    // The serialised form lists every key; the commented file must too.
    let config = full();
    let serialized = Table::try_from(&config).unwrap();
    let written: Table = config.to_toml_string().parse().unwrap();
    assert_eq!(written, serialized);
}

#[test]
fn to_toml_string_shows_defaults_readably() {
    let text = Config::default().to_toml_string();
    for line in [
        "listen = \"127.0.0.1:8080\"",
        "data_dir = \"var\"",
        "cache_capacity = \"64 MiB\"",
        "max_commit_group = 1024",
        "max_age = \"30days\"",
        "max_disk = \"8 GiB\"",
        "min_free_disk = \"1 GiB\"",
        "interval = \"1m\"",
        "filter = \"info\"",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

#[test]
fn unknown_top_level_key() {
    assert_eq!(
        parse("# appliance\n\n[htttp]\nlisten = \"127.0.0.1:1\"\n"),
        Err("/x.toml:3:2: htttp: unknown key `htttp`, expected one of `http`, `store`, `retention`, `log`, `sip`, `media`, `uplink`, `vision`, `device`, `update`".into())
    );
    assert_eq!(
        parse("verbose = true\n"),
        Err("/x.toml:1:1: verbose: unknown key `verbose`, expected one of `http`, `store`, `retention`, `log`, `sip`, `media`, `uplink`, `vision`, `device`, `update`".into())
    );
}

#[test]
fn unknown_nested_key() {
    assert_eq!(
        parse("[http]\nlisten = \"127.0.0.1:1\"\nlistn = \"127.0.0.1:2\"\n"),
        Err("/x.toml:3:1: http.listn: unknown key `listn`, expected `listen` or `tls`".into())
    );
    assert_eq!(
        parse("[retention]\n  max_size = 5\n"),
        Err("/x.toml:2:3: retention.max_size: unknown key `max_size`, expected one of `max_age`, `max_disk`, `min_free_disk`, `interval`".into())
    );
}

#[test]
fn invalid_values_name_key_and_position() {
    assert_eq!(
        parse("[http]\nlisten = \"nope\"\n"),
        Err("/x.toml:2:10: http.listen: invalid socket address `nope`: invalid socket address syntax (expected e.g. `127.0.0.1:8080`)".into())
    );
    assert_eq!(
        parse("[store]\ncache_capacity = \"2 TiB\"\n"),
        Err(
            "/x.toml:2:18: store.cache_capacity: must be between 1 MiB and 1 GiB, got 2 TiB".into()
        )
    );
    assert_eq!(
        parse("[store]\nmax_commit_group = 0\n"),
        Err("/x.toml:2:20: store.max_commit_group: must be between 1 and 65536, got 0".into())
    );
    assert_eq!(
        parse("[http]\n\n[retention]\nmax_age = \"forever\"\n"),
        Err(
            "/x.toml:4:11: retention.max_age: invalid duration `forever`: expected number at 0"
                .into()
        )
    );
    assert_eq!(
        parse("[retention]\nmax_age = \"30m\"\n"),
        Err("/x.toml:2:11: retention.max_age: must be at least 1h, got 30m".into())
    );
    assert_eq!(
        parse("[retention]\nmax_disk = \"1 MiB\"\n"),
        Err("/x.toml:2:12: retention.max_disk: must be at least 16 MiB, got 1 MiB".into())
    );
    assert_eq!(
        parse("[retention]\ninterval = \"2d\"\n"),
        Err("/x.toml:2:12: retention.interval: must be between 1s and 1day, got 2days".into())
    );
    assert_eq!(
        parse("[log]\nfilter = \" \"\n"),
        Err("/x.toml:2:10: log.filter: must not be empty, e.g. \"info\"".into())
    );
    assert_eq!(
        parse("[store]\nmax_commit_group = \"many\"\n"),
        Err(
            "/x.toml:2:20: store.max_commit_group: invalid type: string \"many\", expected usize"
                .into()
        )
    );
}

#[test]
fn malformed_files_have_positions() {
    assert_eq!(
        parse("[http]\nlisten = \n"),
        Err("/x.toml:2:10: invalid string; expected `\"`, `'`".into())
    );
    assert_eq!(
        parse("http = 5\n"),
        Err("/x.toml:1:8: http: invalid type: integer `5`, expected struct HttpConfig".into())
    );
}

#[test]
fn env_overrides_apply() {
    let config = from_env(&[
        ("APPLIANCE_HTTP__LISTEN", "0.0.0.0:8080"),
        ("APPLIANCE_STORE__DATA_DIR", "/data"),
        ("APPLIANCE_STORE__MAX_COMMIT_GROUP", "16"),
        ("APPLIANCE_STORE__CACHE_CAPACITY", "256 MiB"),
        ("APPLIANCE_RETENTION__MAX_AGE", "7d"),
        ("APPLIANCE_RETENTION__MAX_DISK", "\"2 GiB\""),
        ("APPLIANCE_LOG__FILTER", "debug,sled=warn"),
    ])
    .unwrap();
    assert_eq!(config.http.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(config.store.data_dir, Path::new("/data"));
    assert_eq!(config.store.max_commit_group, 16);
    assert_eq!(config.store.cache_capacity, ByteSize::mib(256));
    assert_eq!(config.retention.max_age, Duration::from_secs(7 * DAY));
    assert_eq!(config.retention.max_disk, ByteSize::gib(2));
    assert_eq!(config.log.filter, "debug,sled=warn");
    // Untouched keys keep their defaults.
    assert_eq!(config.retention.interval, Duration::from_secs(60));
}

#[test]
fn env_ignores_other_variables() {
    assert_eq!(
        from_env(&[
            ("PATH", "/usr/bin"),
            ("RUST_LOG", "debug"),
            ("appliance_http__listen", "nope"),
            ("XAPPLIANCE_HTTP__LISTEN", "nope"),
        ]),
        Ok(Config::default())
    );
}

#[test]
fn env_errors_name_the_variable() {
    assert_eq!(
        from_env(&[("APPLIANCE_HTTP__LISTN", "0.0.0.0:1")]),
        Err(
            "environment APPLIANCE_HTTP__LISTN: unknown key `listn`, expected `listen` or `tls`"
                .into()
        )
    );
    assert_eq!(
        from_env(&[("APPLIANCE_HTTPS__LISTEN", "0.0.0.0:1")]),
        Err("environment APPLIANCE_HTTPS__LISTEN: unknown key `https`, expected one of `http`, `store`, `retention`, `log`, `sip`, `media`, `uplink`, `vision`, `device`, `update`".into())
    );
    assert_eq!(
        from_env(&[("APPLIANCE_HTTP__LISTEN", "nope")]),
        Err("environment APPLIANCE_HTTP__LISTEN: invalid socket address `nope`: invalid socket address syntax (expected e.g. `127.0.0.1:8080`)".into())
    );
    assert_eq!(
        from_env(&[("APPLIANCE_STORE__MAX_COMMIT_GROUP", "0")]),
        Err(
            "environment APPLIANCE_STORE__MAX_COMMIT_GROUP: must be between 1 and 65536, got 0"
                .into()
        )
    );
    assert_eq!(
        from_env(&[("APPLIANCE_STORE__CACHE_CAPACITY", "2 TiB")]),
        Err("environment APPLIANCE_STORE__CACHE_CAPACITY: must be between 1 MiB and 1 GiB, got 2 TiB".into())
    );
    // A valid override does not take the blame for a later bad one.
    assert_eq!(
        from_env(&[
            ("APPLIANCE_STORE__MAX_COMMIT_GROUP", "8"),
            ("APPLIANCE_RETENTION__MAX_AGE", "forever"),
        ]),
        Err("environment APPLIANCE_RETENTION__MAX_AGE: invalid duration `forever`: expected number at 0".into())
    );
}

#[test]
fn env_variable_must_have_section_and_key() {
    for var in [
        "APPLIANCE_LISTEN",
        "APPLIANCE_",
        "APPLIANCE___LISTEN",
        "APPLIANCE_HTTP__",
    ] {
        assert_eq!(
            from_env(&[(var, "x")]),
            Err(format!(
                "environment {var}: must be named APPLIANCE_<SECTION>__<KEY> (double underscore), e.g. APPLIANCE_HTTP__LISTEN"
            ))
        );
    }
}

#[test]
fn env_values_are_toml_when_they_parse() {
    assert_eq!(env_value("1024"), Value::Integer(1024));
    assert_eq!(env_value("true"), Value::Boolean(true));
    assert_eq!(env_value("1.5"), Value::Float(1.5));
    assert_eq!(env_value("\"a b\""), Value::String("a b".into()));
    assert_eq!(
        env_value("[1, 2]"),
        Value::Array(vec![Value::Integer(1), Value::Integer(2)])
    );
    for verbatim in ["/data", "0.0.0.0:8080", "64 MiB", "30d", "1\nother = 2", ""] {
        assert_eq!(env_value(verbatim), Value::String(verbatim.into()));
    }
}

/// A configuration file in a fresh temporary directory.
fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("appliance.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn load_reads_file_then_env() {
    let (_dir, path) = file(FULL);
    assert_eq!(Config::load(&path, env(&[])).unwrap(), full());
    let config = Config::load(
        &path,
        env(&[
            ("APPLIANCE_HTTP__LISTEN", "[::1]:80"),
            ("APPLIANCE_STORE__MAX_COMMIT_GROUP", "2"),
        ]),
    )
    .unwrap();
    let mut expected = full();
    expected.http.listen = "[::1]:80".parse().unwrap();
    expected.store.max_commit_group = 2;
    assert_eq!(config, expected);
}

#[test]
fn load_reports_file_errors_with_position_despite_env() {
    let (_dir, path) = file("[store]\nmax_commit_group = 0\n");
    let err = Config::load(&path, env(&[("APPLIANCE_STORE__MAX_COMMIT_GROUP", "8")]))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "{}:2:20: store.max_commit_group: must be between 1 and 65536, got 0",
            path.display()
        )
    );
}

#[test]
fn load_reports_env_errors() {
    let (_dir, path) = file(FULL);
    let err = Config::load(&path, env(&[("APPLIANCE_LOG__LEVEL", "debug")]))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "environment APPLIANCE_LOG__LEVEL: unknown key `level`, expected `filter`"
    );
}

#[test]
fn load_reports_unreadable_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.toml");
    let err = Config::load(&path, env(&[])).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    );
    assert_eq!(
        err.to_string(),
        format!(
            "{}: cannot read: No such file or directory (os error 2)",
            path.display()
        )
    );
}

#[test]
fn sip_ids_must_have_their_digit_counts() {
    let err = parse("[sip]\nplatform_id = \"3402\"\n").unwrap_err();
    assert!(
        err.contains(":2:") && err.contains("sip.platform_id") && err.contains("20 digits"),
        "{err}"
    );
    let err = parse("[sip]\ndomain = \"34020000ab\"\n").unwrap_err();
    assert!(
        err.contains("sip.domain") && err.contains("10 digits"),
        "{err}"
    );
    let err = parse("[sip]\nsubscriptions = [\"weather\"]\n").unwrap_err();
    assert!(
        err.contains("sip.subscriptions") && err.contains("weather"),
        "{err}"
    );
    let err = parse("[sip]\nheartbeat_missed = 0\n").unwrap_err();
    assert!(err.contains("sip.heartbeat_missed"), "{err}");
}

#[test]
fn media_values_are_checked_where_they_are() {
    for (text, expected) in [
        (
            "rtp_ports = \"30500-30000\"",
            "first port is above the last",
        ),
        ("rtp_ports = \"80-90\"", "below 1024"),
        ("rtp_ports = \"30000\"", "no `-`"),
        (
            "rtp_ports = \"30000-70000\"",
            "`70000` is not a port number",
        ),
        ("rtp_ip = \"camera.local\"", "invalid IP address"),
        ("stream_timeout = \"1s\"", "between"),
    ] {
        let err = parse(&format!("[media]\n{text}\n")).unwrap_err();
        assert!(
            err.starts_with("/x.toml:2:") && err.contains("media.") && err.contains(expected),
            "{text}: {err}"
        );
    }
    let config = from_env(&[("APPLIANCE_MEDIA__RTP_PORTS", "31000-31009")]).unwrap();
    assert_eq!(config.media.rtp_ports.len(), 10);
}

#[test]
fn uplink_tables_switch_upstreams_on_and_are_checked() {
    assert_eq!(
        Config::default().uplink.mqtt,
        None,
        "no upstream out of the box"
    );
    let config = parse("[uplink.mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\n").unwrap();
    let mqtt = config.uplink.mqtt.unwrap();
    assert_eq!(
        (mqtt.topic_prefix.as_str(), mqtt.keep_alive.get().as_secs()),
        ("appliance", 30)
    );
    for (text, key, expected) in [
        (
            "[uplink.mqtt]\nurl = \"http://x:1\"",
            "uplink.mqtt.url",
            "mqtt://",
        ),
        (
            "[uplink.mqtt]\nurl = \"mqtt://broker\"",
            "uplink.mqtt.url",
            "port",
        ),
        ("[uplink.mqtt]\ntopic_prefix = \"a\"", "uplink.mqtt", "url"),
        (
            "[uplink.mqtt]\nurl = \"mqtt://b:1\"\ntopic_prefix = \"a/#\"",
            "uplink.mqtt.topic_prefix",
            "wildcards",
        ),
        (
            "[uplink.kafka]\nbrokers = \"k1\"",
            "uplink.kafka.brokers",
            "host:port",
        ),
        (
            "[uplink.kafka]\nbrokers = \"k:1\"\nsecurity_protocol = \"tls\"",
            "uplink.kafka.security_protocol",
            "sasl_ssl",
        ),
        (
            "[uplink]\ndevice_id = \"a/b\"",
            "uplink.device_id",
            "MQTT topics",
        ),
        ("[uplink]\nbatch = 0", "uplink.batch", "between"),
        (
            "[uplink.mqtt]\nurl = \"mqtt://b:1\"\nca_file = \"/ca.pem\"",
            "uplink.mqtt",
            "need an mqtts:// url",
        ),
        (
            "[uplink.mqtt]\nurl = \"mqtts://b:1\"",
            "uplink.mqtt",
            "needs ca_file",
        ),
        (
            "[uplink.mqtt]\nurl = \"mqtt://b:1\"\npassword = \"p\"",
            "uplink.mqtt",
            "needs a username",
        ),
        (
            "[uplink.kafka]\nbrokers = \"k:1\"\nsecurity_protocol = \"sasl_ssl\"\nusername = \"u\"",
            "uplink.kafka",
            "needs sasl_mechanism",
        ),
        (
            "[uplink.kafka]\nbrokers = \"k:1\"\ncert_file = \"/c.pem\"\nsecurity_protocol = \"ssl\"",
            "uplink.kafka",
            "go together",
        ),
    ] {
        let err = parse(text).unwrap_err();
        assert!(err.contains(key) && err.contains(expected), "{text}: {err}");
    }
    // Nested tables have nested variables.
    let config = from_env(&[
        ("APPLIANCE_UPLINK__MQTT__URL", "mqtt://127.0.0.1:1883"),
        ("APPLIANCE_UPLINK__DEVICE_ID", "box-7"),
    ])
    .unwrap();
    assert_eq!(config.uplink.mqtt.unwrap().url, "mqtt://127.0.0.1:1883");
    assert_eq!(config.uplink.device_id, "box-7");
    let err = from_env(&[("APPLIANCE_UPLINK__MQTT__URL", "ftp://x:1")]).unwrap_err();
    assert!(err.contains("APPLIANCE_UPLINK__MQTT__URL"), "{err}");
    // Variables of one table work together whatever their order; a missing key is pinned on
    // the table's variables.
    let config = from_env(&[
        ("APPLIANCE_UPLINK__MQTT__PASSWORD", "p"),
        ("APPLIANCE_UPLINK__MQTT__URL", "mqtt://127.0.0.1:1883"),
        ("APPLIANCE_UPLINK__MQTT__USERNAME", "u"),
    ])
    .unwrap();
    assert_eq!(config.uplink.mqtt.unwrap().password, "p");
    // A variable wrong by itself is named, whichever others come with it.
    let err = from_env(&[
        ("APPLIANCE_HTTPS__LISTEN", "x"),
        ("APPLIANCE_SIP__LISTEN", "127.0.0.1:5060"),
    ])
    .unwrap_err();
    assert!(
        err.starts_with("environment APPLIANCE_HTTPS__LISTEN"),
        "{err}"
    );
    let err = from_env(&[
        ("APPLIANCE_SIP__LISTN", "x"),
        ("APPLIANCE_SIP__PASSWORD", "p"),
    ])
    .unwrap_err();
    assert!(err.starts_with("environment APPLIANCE_SIP__LISTN"), "{err}");
    let err = from_env(&[("APPLIANCE_UPLINK__MQTT__PASSWORD", "p")]).unwrap_err();
    assert!(
        err.contains("APPLIANCE_UPLINK__MQTT__PASSWORD") && err.contains("url"),
        "{err}"
    );
}

const MQTT: &str = "[uplink.mqtt]\nurl = \"mqtt://b:1\"\n";
const S3: &str = "[uplink.s3]\nendpoint = \"http://127.0.0.1:9000\"\nbucket = \"media\"\naccess_key = \"k\"\nsecret_key = \"s\"\n";

#[test]
fn the_s3_table_sends_media_to_a_bucket_and_is_checked() {
    assert_eq!(
        Config::default().uplink.s3,
        None,
        "media over MQTT by default"
    );
    let s3 = parse(&format!("{MQTT}{S3}")).unwrap().uplink.s3.unwrap();
    assert_eq!(
        (
            s3.region.as_str(),
            s3.prefix.as_str(),
            s3.path_style,
            s3.ca_file
        ),
        ("us-east-1", "appliance", true, None)
    );
    for (s3_keys, key, expected) in [
        ("endpoint = \"s3://x:1\"", "uplink.s3.endpoint", "http://"),
        ("endpoint = \"http://x\"", "uplink.s3.endpoint", "port"),
        (
            "endpoint = \"http://x:1/path\"",
            "uplink.s3.endpoint",
            "no path",
        ),
        ("bucket = \"Media\"", "uplink.s3.bucket", "lower-case"),
        ("bucket = \"m\"", "uplink.s3.bucket", "3 to 63"),
        ("prefix = \"/a\"", "uplink.s3.prefix", "leading"),
        ("region = \"\"", "uplink.s3.region", "empty"),
        ("secret_key = \"\"", "uplink.s3.secret_key", "empty"),
        ("ca_file = \"/ca.pem\"", "uplink.s3", "https://"),
        ("path_style = \"yes\"", "uplink.s3.path_style", "bool"),
        ("path_style = false", "uplink.s3", "not an IP address"),
    ] {
        let name = s3_keys.split_once(' ').unwrap().0;
        let table: String = S3
            .lines()
            .filter(|line| !line.starts_with(&format!("{name} ")))
            .map(|line| format!("{line}\n"))
            .collect();
        let text = format!("{MQTT}{table}{s3_keys}\n");
        let err = parse(&text).unwrap_err();
        assert!(err.contains(key) && err.contains(expected), "{text}: {err}");
    }
    let err = parse(&format!("{MQTT}[uplink.s3]\nendpoint = \"http://x:1\"")).unwrap_err();
    assert!(err.contains("uplink.s3") && err.contains("bucket"), "{err}");
    // Media follow the events delivered over MQTT: without it there would be none.
    let err = parse(S3).unwrap_err();
    assert!(
        err.contains("uplink") && err.contains("needs [uplink.mqtt]"),
        "{err}"
    );

    // The table can come from the environment alone; a variable wrong by itself is named.
    let config = from_env(&[
        ("APPLIANCE_UPLINK__MQTT__URL", "mqtt://127.0.0.1:1883"),
        ("APPLIANCE_UPLINK__S3__ACCESS_KEY", "k"),
        ("APPLIANCE_UPLINK__S3__BUCKET", "media"),
        (
            "APPLIANCE_UPLINK__S3__ENDPOINT",
            "https://s3.example.com:443",
        ),
        ("APPLIANCE_UPLINK__S3__PATH_STYLE", "false"),
        ("APPLIANCE_UPLINK__S3__SECRET_KEY", "s"),
    ])
    .unwrap();
    let s3 = config.uplink.s3.unwrap();
    assert_eq!((s3.bucket.as_str(), s3.path_style), ("media", false));
    let err = from_env(&[
        ("APPLIANCE_UPLINK__MQTT__URL", "mqtt://127.0.0.1:1883"),
        ("APPLIANCE_UPLINK__S3__ENDPOINT", "ftp://x:1"),
    ])
    .unwrap_err();
    assert!(err.contains("APPLIANCE_UPLINK__S3__ENDPOINT"), "{err}");
    let err = from_env(&[("APPLIANCE_UPLINK__S3__ENDPOINT", "http://x:1")]).unwrap_err();
    assert!(err.contains("APPLIANCE_UPLINK__S3__ENDPOINT"), "{err}");
}

#[test]
fn settings_apply_over_a_configuration_and_are_checked() {
    use std::collections::BTreeMap;
    let none = BTreeMap::new();
    assert_eq!(full().with_settings(&none).unwrap(), full(), "a round trip");
    assert_eq!(
        Config::default().with_settings(&none).unwrap(),
        Config::default()
    );
    let mut settings = BTreeMap::new();
    settings.insert("retention.max_age".to_owned(), Value::String("7d".into()));
    settings.insert("uplink.batch".to_owned(), Value::Integer(500));
    let changed = full().with_settings(&settings).unwrap();
    assert_eq!(changed.retention.max_age, Duration::from_secs(7 * DAY));
    assert_eq!(changed.uplink.batch, 500);
    assert_eq!(changed.uplink.mqtt, full().uplink.mqtt, "the rest stays");

    settings.insert("uplink.batch".to_owned(), Value::Integer(0));
    let err = full().with_settings(&settings).unwrap_err().to_string();
    assert!(err.starts_with("setting uplink.batch: "), "{err}");
    let mut listen = BTreeMap::new();
    listen.insert("http.listen".to_owned(), Value::String("0.0.0.0:80".into()));
    let err = full().with_settings(&listen).unwrap_err().to_string();
    assert!(
        err.contains("setting http.listen: not a setting that may be changed"),
        "{err}"
    );
}
