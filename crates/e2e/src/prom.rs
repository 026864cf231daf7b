//! Talking to the monitoring endpoints from inside a node: HTTPS verified against the cluster CA,
//! with or without the basic-auth password (read by the guest's python3 from the 0600 file
//! Prometheus uses, never on a command line), and reading Prometheus' HTTP API.

use crate::{fail, Node, Result};

/// The CA and the password file on the backup node (pgnode's monitoring layout).
const CA: &str = "/etc/ssl/pgnode/ca.crt";
const PASS: &str = "/etc/pgnode/monitoring/web.pass";
pub const USER: &str = "pgnode";

/// A GET from `node`: prints the HTTP status on the first line, then the body. A TLS failure
/// prints `tls-error` and the reason.
const GET: &str = r#"
import base64, ssl, sys, urllib.error, urllib.request
url, auth, ca, pw = sys.argv[1], sys.argv[2] == "auth", sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
req = urllib.request.Request(url)
if auth:
    secret = open(pw).read().strip()
    req.add_header("Authorization", "Basic " + base64.b64encode(("pgnode:" + secret).encode()).decode())
try:
    r = urllib.request.urlopen(req, context=ctx, timeout=10)
    print(r.status)
    sys.stdout.write(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code)
except (ssl.SSLError, urllib.error.URLError, ConnectionError, OSError) as e:
    print("tls-error" if "SSL" in repr(e) or "CERTIFICATE" in repr(e) else "conn-error")
    print(repr(e))
"#;

/// GETs `url` from `node` (`auth`: with the password); returns (status, body).
pub fn get(node: &Node, url: &str, auth: bool) -> Result<(String, String)> {
    let a = if auth { "auth" } else { "none" };
    let out = node.run(&["python3", "-c", GET, url, a, CA, PASS])?;
    if !out.success() {
        return fail(
            format!("GET {url} from {node}: python3 failed"),
            out.combined(),
        );
    }
    let (status, body) = out.stdout.split_once('\n').unwrap_or((&out.stdout, ""));
    Ok((status.trim().to_string(), body.to_string()))
}

/// Prometheus' JSON answer to `path` (`/api/v1/...`) on the backup node, its `data` member.
pub fn api(backup: &Node, path: &str) -> Result<serde_json::Value> {
    let url = format!("https://{}:9090{path}", backup.address);
    let (status, body) = get(backup, &url, true)?;
    if status != "200" {
        return fail(format!("GET {url}: HTTP {status}"), body);
    }
    match serde_json::from_str::<serde_json::Value>(&body) {
        Ok(v) if v["status"] == "success" => Ok(v["data"].clone()),
        Ok(v) => fail(format!("GET {url}: status {}", v["status"]), body),
        Err(e) => fail(format!("GET {url}: not JSON: {e}"), body),
    }
}

/// The scrape targets: (job, instance, health, last error) each.
pub fn targets(backup: &Node) -> Result<Vec<(String, String, String, String)>> {
    let data = api(backup, "/api/v1/targets?state=active")?;
    Ok(data["activeTargets"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| {
                    let s = |k: &str| t[k].as_str().unwrap_or("").to_string();
                    (
                        s("scrapePool"),
                        t["labels"]["instance"].as_str().unwrap_or("").to_string(),
                        s("health"),
                        s("lastError"),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

/// The alerts Prometheus holds now: (alertname, state, labels as `k=v,...`) each.
pub fn alerts(backup: &Node) -> Result<Vec<Alert>> {
    let data = api(backup, "/api/v1/alerts")?;
    Ok(parse_alerts(&data))
}

/// One alert of Prometheus' `/api/v1/alerts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub name: String,
    pub state: String,
    pub labels: String,
}

/// Parses the `data` member of `/api/v1/alerts`.
pub fn parse_alerts(data: &serde_json::Value) -> Vec<Alert> {
    let Some(list) = data["alerts"].as_array() else {
        return Vec::new();
    };
    list.iter()
        .map(|a| {
            let labels = a["labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(k, _)| *k != "alertname")
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            Alert {
                name: a["labels"]["alertname"].as_str().unwrap_or("").to_string(),
                state: a["state"].as_str().unwrap_or("").to_string(),
                labels,
            }
        })
        .collect()
}

/// Whether `name` is firing in `alerts`.
pub fn firing(alerts: &[Alert], name: &str) -> bool {
    alerts.iter().any(|a| a.name == name && a.state == "firing")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_are_read_from_the_api() {
        let data = serde_json::json!({"alerts": [
            {"labels": {"alertname": "PgnodeArchivingFailing", "node": "master", "severity": "critical"}, "state": "firing"},
            {"labels": {"alertname": "PgnodeNodeUnhealthy", "node": "slave"}, "state": "pending"}
        ]});
        let a = parse_alerts(&data);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].labels, "node=master,severity=critical");
        assert!(firing(&a, "PgnodeArchivingFailing"));
        assert!(!firing(&a, "PgnodeNodeUnhealthy"));
        assert!(!firing(&a, "PgnodeNodeDown"));
    }
}
