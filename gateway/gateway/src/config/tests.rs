//! Tests of `config`.

use super::*;

#[test]
fn empty_file_gives_defaults() {
    let config = Config::parse("").unwrap();
    assert_eq!(config.portal.listen.port(), 443);
    assert_eq!(config.recording.chunk_max_age_ms, 1000);
    // The portal's limits come from its own defaults, unchanged by the round trip.
    let portal = config.portal.portal_config();
    let defaults = PortalConfig::default();
    assert_eq!(portal.tls_handshake_timeout, defaults.tls_handshake_timeout);
    assert_eq!(portal.header_read_timeout, defaults.header_read_timeout);
    assert_eq!(portal.request_timeout, defaults.request_timeout);
    assert_eq!(portal.max_connections_per_source, 32);
    assert_eq!(portal.max_connections, defaults.max_connections);
    assert_eq!(portal.login_throttle, defaults.login_throttle);
    assert_eq!(portal.session_idle_timeout, defaults.session_idle_timeout);
    assert_eq!(portal.session_max_age, defaults.session_max_age);
    assert!(config.quic.enabled);
    assert_eq!(config.quic.certificate_hours, 8);
}

#[test]
fn edge_section_is_read() {
    let config = Config::parse(
            "[edge]\nrequired = true\nnew_flows_per_second = 5\n[[edge.interfaces]]\nname = \"eth0\"\nrole = \"public\"\n[[edge.interfaces]]\nname = \"eth1\"\nrole = \"internal\"\n",
        )
        .unwrap();
    assert!(config.edge.required);
    assert_eq!(config.edge.new_flows_per_second, 5);
    assert_eq!(config.edge.interfaces.len(), 2);
    assert_eq!(config.edge.interfaces[1].role, EdgeRole::Internal);
    assert!(config.edge.block_locked_out_sources);
    assert!(Config::parse("").unwrap().edge.interfaces.is_empty());
}

#[test]
fn portal_limits_are_read() {
    let config = Config::parse(
            "[portal]\nheader_read_timeout_secs = 2\nmax_connections_per_source = 4\nlogin_user_lock_secs = 3\n",
        )
        .unwrap();
    let portal = config.portal.portal_config();
    assert_eq!(portal.header_read_timeout, Duration::from_secs(2));
    assert_eq!(portal.max_connections_per_source, 4);
    assert_eq!(portal.login_throttle.user_lock, Duration::from_secs(3));
    assert_eq!(portal.login_throttle.source_max_failures, 5);
}

#[test]
fn broken_configs_are_refused_with_the_reason() {
    let cases = [
        (
            "[portal]\nlisten = \"127.0.0.1:8443\"\nlisen = 1\n",
            "unknown field",
        ),
        ("unknown = 1\n", "unknown field"),
        (
            "[[targets]]\nname = \"a\"\naddress = \"10.0.0.1\"\nprotocol = \"telnet\"\n",
            "unknown protocol",
        ),
        (
            "[[targets]]\nname = \"a\"\naddress = \"256.1.1.1\"\n",
            "not a valid IP",
        ),
        (
            "[[targets]]\nname = \"a\"\naddress = \"10.0.0.1\"\n[[targets]]\nname = \"a\"\naddress = \"10.0.0.2\"\n",
            "declared twice",
        ),
        ("[portal]\ntls_cert = \"/x.pem\"\n", "go together"),
        ("[sessions]\nmax_sessions_per_user = 0\n", "at least 1"),
        ("[sessions]\nidle_minutes = 5\n", "unknown field"),
        (
            "[portal]\nheader_read_timeout_secs = 0\n",
            "must be positive",
        ),
        (
            "[portal]\nmax_connections_per_source = 0\n",
            "must be positive",
        ),
        (
            "[portal]\nlogin_backoff_initial_secs = 10\nlogin_backoff_max_secs = 5\n",
            "at least",
        ),
        (
            "[[networks]]\nname = \"n\"\ncidr = \"10.0.0.0/33\"\n",
            "invalid",
        ),
        ("[edge]\nrequired = true\n", "at least one"),
        ("[quic]\ncertificate_hours = 0\n", "between 1 and 744"),
        ("[quic]\nport = 443\n", "unknown field"),
        (
            "[[edge.interfaces]]\nname = \"eth0\"\nrole = \"dmz\"\n",
            "unknown variant",
        ),
        (
            "[[edge.interfaces]]\nname = \"eth1\"\nrole = \"internal\"\n",
            "no edge interface is public",
        ),
        (
            "[[edge.interfaces]]\nname = \"eth0\"\nrole = \"public\"\n[[edge.interfaces]]\nname = \"eth0\"\nrole = \"public\"\n",
            "listed twice",
        ),
    ];
    for (text, expected) in cases {
        let error = format!("{:#}", Config::parse(text).unwrap_err());
        assert!(error.contains(expected), "{text:?}: {error}");
    }
}
