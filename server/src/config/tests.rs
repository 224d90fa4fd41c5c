use clap::{Args, Command, Parser};

use super::*;

#[derive(Debug, Parser)]
struct Serve {
    #[command(flatten)]
    args: ServeArgs,
}

/// A value for every setting, as a flag value and as a TOML value.
const SAMPLES: [(&str, &str, &str); 29] = [
    ("listen", "127.0.0.1:7001", "\"127.0.0.1:7001\""),
    ("listen_addr_file", "/tmp/addr", "\"/tmp/addr\""),
    ("database_url", "sqlite:///tmp/x.db", "\"sqlite:///tmp/x.db\""),
    ("data_file", "/tmp/y.db", "\"/tmp/y.db\""),
    ("relaxed_durability", "true", "true"),
    ("retention_seconds", "60", "60"),
    ("pool_size", "3", "3"),
    ("database_timeout_seconds", "2", "2"),
    ("sqlite_wal_limit_mib", "16", "16"),
    ("sqlite_page_size", "2048", "2048"),
    ("commit_delay_us", "50", "50"),
    ("max_message_bytes", "1000", "1000"),
    ("max_data_bytes", "100", "100"),
    ("max_attributes", "5", "5"),
    ("max_subscriptions", "7", "7"),
    ("max_streams_per_connection", "9", "9"),
    ("keepalive_seconds", "4", "4"),
    ("metrics_addr", "127.0.0.1:7002", "\"127.0.0.1:7002\""),
    ("http_addr", "127.0.0.1:7002", "\"127.0.0.1:7002\""),
    ("http_addr_file", "/tmp/http-addr", "\"/tmp/http-addr\""),
    ("otlp_endpoint", "http://collector:4317", "\"http://collector:4317\""),
    ("jaeger_ui_url", "http://jaeger:16686/", "\"http://jaeger:16686/\""),
    ("tls_cert", "/tls/cert.pem", "\"/tls/cert.pem\""),
    ("tls_key", "/tls/key.pem", "\"/tls/key.pem\""),
    ("tls_client_ca", "/tls/ca.pem", "\"/tls/ca.pem\""),
    ("admin_token_file", "/tls/admin", "\"/tls/admin\""),
    ("token_cache_seconds", "3", "3"),
    ("insecure", "true", "true"),
    ("reflection", "false", "false"),
];

fn parse(argv: &[String]) -> ServeArgs {
    let mut all = vec!["serve".to_string()];
    all.extend_from_slice(argv);
    Serve::try_parse_from(all).unwrap().args
}

#[test]
fn every_flag_is_a_key_of_the_file() {
    let flags: Vec<String> = ServeArgs::augment_args(Command::new("serve"))
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .filter(|id| id != "config")
        .collect();
    let sampled: Vec<&str> = SAMPLES.iter().map(|(key, _, _)| *key).collect();
    assert_eq!(flags, sampled, "every flag has a sample here, in the order of the definition");
    let argv: Vec<String> =
        SAMPLES.iter().flat_map(|(key, flag, _)| [format!("--{}", key.replace('_', "-")), flag.to_string()]).collect();
    let from_flags = parse(&argv);
    let toml: String = SAMPLES.iter().map(|(key, _, value)| format!("{key} = {value}\n")).collect();
    let from_file: ServeArgs = toml::from_str(&toml).unwrap();
    assert_eq!(from_file, from_flags);
    let resolved = from_file.resolve().unwrap();
    assert_eq!(resolved.config.listen.to_string(), "127.0.0.1:7001");
    assert_eq!(resolved.config.limits.max_streams_per_connection, 9);
    assert_eq!(resolved.config.store.durability, Durability::Relaxed);
    assert_eq!(resolved.telemetry.otlp_endpoint.as_deref(), Some("http://collector:4317"));
    assert_eq!(resolved.config.store.database_timeout, Duration::from_secs(2));
    assert_eq!(resolved.config.store.sqlite_wal_limit, 16 << 20);
    assert_eq!(resolved.config.store.sqlite_page_size, 2048);
    assert_eq!(resolved.config.store.commit_delay, Duration::from_micros(50));
    let tls = resolved.config.tls.unwrap();
    assert_eq!((tls.cert.to_str(), tls.key.to_str()), (Some("/tls/cert.pem"), Some("/tls/key.pem")));
    assert_eq!(tls.client_ca.as_deref().and_then(|p| p.to_str()), Some("/tls/ca.pem"));
    assert!(resolved.config.insecure && !resolved.config.reflection);
    assert_eq!(resolved.config.admin_token_file.as_deref().and_then(|p| p.to_str()), Some("/tls/admin"));
    assert_eq!(resolved.config.token_cache, Duration::from_secs(3));
    assert_eq!(resolved.config.jaeger_ui_url.as_deref(), Some("http://jaeger:16686"));
    assert_eq!(resolved.config.http_addr.map(|a| a.to_string()).as_deref(), Some("127.0.0.1:7002"));
    assert_eq!(resolved.http_addr_file.as_deref().and_then(|p| p.to_str()), Some("/tmp/http-addr"));
}

#[test]
fn metrics_addr_is_another_name_of_http_addr() {
    let resolve = |argv: &[&str]| parse(&argv.iter().map(|a| a.to_string()).collect::<Vec<_>>()).resolve();
    let addr = |argv: &[&str]| resolve(argv).unwrap().config.http_addr.map(|a| a.to_string());
    assert_eq!(addr(&[]), None);
    assert_eq!(addr(&["--metrics-addr", "127.0.0.1:9464"]).as_deref(), Some("127.0.0.1:9464"));
    assert_eq!(addr(&["--http-addr", "127.0.0.1:8080"]).as_deref(), Some("127.0.0.1:8080"));
    let same = ["--http-addr", "127.0.0.1:8080", "--metrics-addr", "127.0.0.1:8080"];
    assert_eq!(addr(&same).as_deref(), Some("127.0.0.1:8080"));
    let differ = resolve(&["--http-addr", "127.0.0.1:8080", "--metrics-addr", "127.0.0.1:9464"]).unwrap_err();
    assert!(differ.to_string().starts_with("--http-addr 127.0.0.1:8080 and --metrics-addr 127.0.0.1:9464 differ"));
}

#[test]
fn tls_flags_go_together() {
    let resolve = |argv: &[&str]| parse(&argv.iter().map(|a| a.to_string()).collect::<Vec<_>>()).resolve();
    let cases: [(&[&str], Option<&str>); 5] = [
        (&[], None),
        (&["--tls-cert", "c", "--tls-key", "k"], None),
        (&["--tls-cert", "c"], Some("--tls-cert needs --tls-key")),
        (&["--tls-key", "k"], Some("--tls-key needs --tls-cert")),
        (&["--tls-client-ca", "ca"], Some("--tls-client-ca needs TLS: set --tls-cert and --tls-key too")),
    ];
    for (argv, error) in cases {
        let result = resolve(argv);
        assert_eq!(result.as_ref().err().map(ToString::to_string).as_deref(), error, "{argv:?}");
    }
    let defaults = resolve(&[]).unwrap().config;
    assert!(defaults.tls.is_none() && !defaults.insecure && defaults.reflection);
    assert!(!resolve(&["--reflection=false"]).unwrap().config.reflection);
}

#[test]
fn the_file_takes_log_format_and_rejects_unknown_keys() {
    let file: ServeArgs = toml::from_str("log_format = \"json\"").unwrap();
    assert_eq!(file.log_format, Some(LogFormat::Json));
    assert!(toml::from_str::<ServeArgs>("lisen = \"127.0.0.1:1\"").is_err());
    assert!(toml::from_str::<ServeArgs>("config = \"other.toml\"").is_err(), "a file names no other file");
}

#[test]
fn flags_win_over_the_file_and_the_file_over_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("eventbus.toml");
    std::fs::write(&path, "pool_size = 3\nmax_attributes = 5\nlog_format = \"json\"\nrelaxed_durability = true\n")
        .unwrap();
    let argv = ["--config".to_string(), path.display().to_string(), "--pool-size".into(), "4".into()];
    let resolved = parse(&argv).resolve().unwrap();
    assert_eq!(resolved.config.store.pool_size, 4, "the flag wins");
    assert_eq!(resolved.config.limits.max_attributes, 5, "the file fills what flags leave unset");
    assert_eq!(resolved.log_format, LogFormat::Json);
    assert_eq!(resolved.config.store.durability, Durability::Relaxed);
    assert_eq!(resolved.config.limits.max_data_bytes, Limits::default().max_data_bytes, "the default stays");
    let argv = ["--config".to_string(), path.display().to_string(), "--relaxed-durability=false".into()];
    assert_eq!(parse(&argv).resolve().unwrap().config.store.durability, Durability::Full);
}

#[test]
fn relaxed_durability_is_a_switch() {
    assert_eq!(parse(&["--relaxed-durability".into()]).relaxed_durability, Some(true));
    assert_eq!(parse(&["--relaxed-durability".into(), "--pool-size".into(), "2".into()]).pool_size, Some(2));
    assert_eq!(parse(&[]).relaxed_durability, None);
}

#[test]
fn certificate_principals_come_from_the_file_and_need_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("eventbus.toml");
    let principals = "[[certificate_principals]]\nname = \"runner\"\ngrants = [\"reader:shop\", \"admin:*\"]\n";
    std::fs::write(&path, format!("tls_cert = \"c\"\ntls_key = \"k\"\ntls_client_ca = \"ca\"\n{principals}")).unwrap();
    let resolved = parse(&["--config".to_string(), path.display().to_string()]).resolve().unwrap();
    let principals_resolved = &resolved.config.certificate_principals;
    assert_eq!(principals_resolved.len(), 1);
    assert_eq!((principals_resolved[0].name.as_str(), principals_resolved[0].grants.len()), ("runner", 2));

    std::fs::write(&path, principals).unwrap();
    let error = parse(&["--config".to_string(), path.display().to_string()]).resolve().unwrap_err().to_string();
    assert!(error.starts_with("certificate_principals need mutual TLS"), "{error}");
    std::fs::write(&path, principals.replace("reader:shop", "root:shop")).unwrap();
    let error = parse(&["--config".to_string(), path.display().to_string()]).resolve().unwrap_err().to_string();
    assert!(error.contains("unknown role \"root\""), "{error}");
}
