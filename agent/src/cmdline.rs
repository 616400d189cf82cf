//! Kernel command line: `ipa-*` settings and boot facts (`BOOTIF`, `boot_method`).
//!
//! Parsed exactly as upstream does: split on whitespace, keep tokens containing `=`, split each
//! at the first `=`; no quoting; later duplicates win. The text is passed in: reading
//! `/proc/cmdline` happens at the CLI edge.

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::config::{BootParams, ConfigError, Settings};

/// `key=value` pairs of a kernel command line.
pub fn parse_params(cmdline: &str) -> BTreeMap<String, String> {
    cmdline
        .split_whitespace()
        .filter_map(|token| token.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Upstream's lenient boolean (`ipa-debug=1`, `yes`, `on`, `true`; case-insensitive).
pub fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" | "y" | "t" => Ok(true),
        "0" | "false" | "no" | "off" | "n" | "f" => Ok(false),
        other => Err(format!(
            "expected a boolean (true/false, 1/0, yes/no, on/off), got {other:?}"
        )),
    }
}

fn typed<T: FromStr>(key: &str, value: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    value.parse::<T>().map_err(|e| invalid(key, value, e.to_string()))
}

fn invalid(key: &str, value: &str, reason: String) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        source_name: "kernel command line",
        value: value.to_owned(),
        reason,
    }
}

/// Settings and boot facts found on a kernel command line, plus the `ipa-*` keys that Rivet
/// does not use (so they can be logged rather than silently dropped).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KernelSettings {
    /// Settings from `ipa-*` keys.
    pub settings: Settings,
    /// `BOOTIF` and `boot_method`.
    pub boot: BootParams,
    /// `ipa-*` keys not understood by this agent.
    pub ignored: Vec<String>,
}

/// Read the `ipa-*` keys and boot facts of a kernel command line.
pub fn parse_kernel_settings(cmdline: &str) -> Result<KernelSettings, ConfigError> {
    let mut out = KernelSettings::default();
    for (key, value) in parse_params(cmdline) {
        let s = &mut out.settings;
        let v = value.as_str();
        let k = key.as_str();
        match k {
            "BOOTIF" => out.boot.bootif = Some(value.clone()),
            "boot_method" => out.boot.boot_method = Some(value.clone()),
            "ipa-api-url" => s.api_url = Some(typed(k, v)?),
            "ipa-global-request-id" => s.global_request_id = Some(value.clone()),
            "ipa-listen-host" => s.listen_host = Some(typed(k, v)?),
            "ipa-listen-port" => s.listen_port = Some(typed(k, v)?),
            "ipa-advertise-host" => s.advertise_host = Some(value.clone()),
            "ipa-advertise-port" => s.advertise_port = Some(typed(k, v)?),
            "ipa-network-interface" => s.network_interface = Some(value.clone()),
            "ipa-agent-token" => s.agent_token = Some(value.clone()),
            "ipa-lookup-timeout" => s.lookup_timeout = Some(typed(k, v)?),
            "ipa-lookup-interval" => s.lookup_interval = Some(typed(k, v)?),
            "ipa-http-request-timeout" => s.http_request_timeout = Some(typed(k, v)?),
            "ipa-ip-lookup-attempts" => s.ip_lookup_attempts = Some(typed(k, v)?),
            // Upstream's kernel key for `ip_lookup_sleep` is named "timeout".
            "ipa-ip-lookup-timeout" => s.ip_lookup_sleep = Some(typed(k, v)?),
            "ipa-ironic-api-version" => s.ironic_api_version = Some(typed(k, v)?),
            "ipa-insecure" => s.insecure = Some(parse_bool(v).map_err(|e| invalid(k, v, e))?),
            "ipa-tls-min-version" => s.tls_min_version = Some(typed(k, v)?),
            "ipa-debug" => s.debug = Some(parse_bool(v).map_err(|e| invalid(k, v, e))?),
            "rivet-log-format" => s.log_format = Some(v.parse().map_err(|e: String| invalid(k, v, e))?),
            "ipa-image-spool-dir" => s.image_spool_dir = Some(v.into()),
            "ipa-image-download-connection-timeout" => s.image_download_connection_timeout = Some(typed(k, v)?),
            "ipa-image-download-connection-retries" => s.image_download_connection_retries = Some(typed(k, v)?),
            "ipa-image-download-connection-retry-interval" => {
                s.image_download_connection_retry_interval = Some(typed(k, v)?)
            }
            "ipa-inspection-callback-url" => s.inspection_callback_url = Some(typed(k, v)?),
            "ipa-inspection-collectors" => s.inspection_collectors = Some(typed(k, v)?),
            "ipa-inspection-dhcp-wait-timeout" => s.inspection_dhcp_wait_timeout = Some(typed(k, v)?),
            "ipa-inspection-dhcp-all-interfaces" => {
                s.inspection_dhcp_all_interfaces = Some(parse_bool(v).map_err(|e| invalid(k, v, e))?)
            }
            "ipa-inspection-benchmarks" => s.inspection_benchmarks = Some(typed(k, v)?),
            "ipa-collect-lldp" => s.collect_lldp = Some(parse_bool(v).map_err(|e| invalid(k, v, e))?),
            "ipa-lldp-timeout" => s.lldp_timeout = Some(typed(k, v)?),
            _ if k.starts_with("ipa-") => out.ignored.push(key.clone()),
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ApiUrls, Seconds, TlsMinVersion};

    #[test]
    fn splitting_follows_upstream() {
        let table: &[(&str, &[(&str, &str)])] = &[
            ("", &[]),
            ("ro quiet", &[]),
            ("a=1 b=2", &[("a", "1"), ("b", "2")]),
            ("a=1 a=2", &[("a", "2")]),
            ("k=v=w", &[("k", "v=w")]),
            ("  tabs\tk=v\n", &[("k", "v")]),
            ("q=\"a b\"", &[("q", "\"a")]),
            ("empty=", &[("empty", "")]),
        ];
        for (line, want) in table {
            let got = parse_params(line);
            let want: BTreeMap<String, String> = want.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            assert_eq!(got, want, "{line:?}");
        }
    }

    #[test]
    fn ipa_keys_become_settings() {
        let line = "BOOT_IMAGE=/vmlinuz ipa-api-url=http://192.0.2.1:6385,https://api.example:6385 \
                    ipa-listen-port=9998 ipa-advertise-host=192.0.2.9 ipa-debug=1 ipa-lookup-timeout=30 \
                    ipa-ip-lookup-timeout=2 ipa-tls-min-version=1.3 ipa-agent-token=abc \
                    BOOTIF=01-52-54-00-aa-00-01 boot_method=vmedia ipa-collect-lldp=1 ipa-fancy-new-key=1 \
                    rivet-log-format=json";
        let k = parse_kernel_settings(line).expect("parses");
        let s = &k.settings;
        assert_eq!(s.api_url.as_ref().map(|u: &ApiUrls| u.0.len()), Some(2));
        assert_eq!(s.listen_port, Some(9998));
        assert_eq!(s.advertise_host.as_deref(), Some("192.0.2.9"));
        assert_eq!(s.debug, Some(true));
        assert_eq!(s.log_format, Some(rivet_common::logging::LogFormat::Json));
        assert_eq!(s.lookup_timeout, Some(Seconds(30.0)));
        assert_eq!(s.ip_lookup_sleep, Some(Seconds(2.0)));
        assert_eq!(s.tls_min_version, Some(TlsMinVersion::Tls13));
        assert_eq!(s.agent_token.as_deref(), Some("abc"));
        assert_eq!(k.boot.bootif.as_deref(), Some("01-52-54-00-aa-00-01"));
        assert_eq!(k.boot.boot_method.as_deref(), Some("vmedia"));
        assert_eq!(s.collect_lldp, Some(true));
        assert_eq!(k.ignored, vec!["ipa-fancy-new-key".to_owned()]);
    }

    #[test]
    fn malformed_values_name_the_key() {
        let table = [
            ("ipa-listen-port=http", "ipa-listen-port"),
            ("ipa-listen-port=70000", "ipa-listen-port"),
            ("ipa-api-url=mdns", "ipa-api-url"),
            ("ipa-api-url=not-a-url", "ipa-api-url"),
            ("ipa-lookup-timeout=-1", "ipa-lookup-timeout"),
            ("ipa-insecure=maybe", "ipa-insecure"),
            ("ipa-listen-host=host.example", "ipa-listen-host"),
            ("ipa-tls-min-version=1.1", "ipa-tls-min-version"),
            ("ipa-ironic-api-version=latest", "ipa-ironic-api-version"),
            ("ipa-inspection-callback-url=mdns", "ipa-inspection-callback-url"),
            ("ipa-inspection-callback-url=ftp://x/", "ipa-inspection-callback-url"),
            (
                "ipa-inspection-dhcp-wait-timeout=-1",
                "ipa-inspection-dhcp-wait-timeout",
            ),
            (
                "ipa-inspection-dhcp-wait-timeout=1.5",
                "ipa-inspection-dhcp-wait-timeout",
            ),
            (
                "ipa-inspection-dhcp-all-interfaces=sometimes",
                "ipa-inspection-dhcp-all-interfaces",
            ),
            ("ipa-collect-lldp=maybe", "ipa-collect-lldp"),
            ("ipa-lldp-timeout=soon", "ipa-lldp-timeout"),
        ];
        for (line, key) in table {
            let err = parse_kernel_settings(line).expect_err(line);
            let text = err.to_string();
            assert!(
                text.contains(key) && text.contains("kernel command line"),
                "{line}: {text}"
            );
        }
    }

    #[test]
    fn inspection_keys_become_settings() {
        let line = "ipa-inspection-callback-url=http://192.0.2.1:6385/v1/continue_inspection \
                    ipa-inspection-collectors=default,,pci-devices,%20 ipa-inspection-dhcp-wait-timeout=0 \
                    ipa-inspection-dhcp-all-interfaces=yes ipa-inspection-benchmarks=cpu,mem \
                    ipa-collect-lldp=0 ipa-lldp-timeout=2.5";
        let k = parse_kernel_settings(line).expect("parses");
        let s = &k.settings;
        assert_eq!(
            s.inspection_callback_url.as_ref().map(|u| u.0[0].as_str()),
            Some("http://192.0.2.1:6385/v1/continue_inspection")
        );
        assert_eq!(
            s.inspection_collectors.as_ref().map(|c| c.0.clone()),
            Some(vec!["default".to_owned(), "pci-devices".to_owned(), "%20".to_owned()]),
            "blanks between commas are dropped; names are checked when inspection runs"
        );
        assert_eq!(s.inspection_dhcp_wait_timeout, Some(0));
        assert_eq!(s.inspection_dhcp_all_interfaces, Some(true));
        assert_eq!(
            s.inspection_benchmarks.as_ref().map(|b| b.0.clone()),
            Some(vec!["cpu".to_owned(), "mem".to_owned()])
        );
        assert_eq!(s.collect_lldp, Some(false));
        assert_eq!(s.lldp_timeout, Some(Seconds(2.5)));
        assert!(k.ignored.is_empty(), "{:?}", k.ignored);
    }

    #[test]
    fn booleans_are_lenient() {
        for (text, want) in [("1", true), ("TRUE", true), ("on", true), ("0", false), ("No", false)] {
            assert_eq!(parse_bool(text), Ok(want), "{text}");
        }
        assert!(parse_bool("2").is_err());
    }
}
