//! The template registry. Templates live in `config/templates/` where users read them and are
//! embedded at compile time, so the uploaded binary is self-contained. Rendering is strict:
//! a key missing from the data is an error, never an empty string.

use handlebars::Handlebars;

use crate::error::{Error, Result};

/// Every template, by name (file name without `.hbs`).
pub const TEMPLATES: &[(&str, &str)] = &[
    (
        "postgresql.conf",
        include_str!("../../../config/templates/postgresql.conf.hbs"),
    ),
    (
        "pg_hba.conf",
        include_str!("../../../config/templates/pg_hba.conf.hbs"),
    ),
    (
        "standby.conf",
        include_str!("../../../config/templates/standby.conf.hbs"),
    ),
    (
        "recovery.conf",
        include_str!("../../../config/templates/recovery.conf.hbs"),
    ),
    (
        "put-wal-only",
        include_str!("../../../config/templates/put-wal-only.hbs"),
    ),
    (
        "pgpass",
        include_str!("../../../config/templates/pgpass.hbs"),
    ),
    (
        "barman.conf",
        include_str!("../../../config/templates/barman.conf.hbs"),
    ),
    (
        "barman-server.conf",
        include_str!("../../../config/templates/barman-server.conf.hbs"),
    ),
    (
        "barman-cron",
        include_str!("../../../config/templates/barman-cron.hbs"),
    ),
    (
        "authorized_keys",
        include_str!("../../../config/templates/authorized_keys.hbs"),
    ),
    (
        "known_hosts",
        include_str!("../../../config/templates/known_hosts.hbs"),
    ),
    (
        "ssh_config",
        include_str!("../../../config/templates/ssh_config.hbs"),
    ),
    (
        "monitoring-web.yml",
        include_str!("../../../config/templates/monitoring-web.yml.hbs"),
    ),
    (
        "node-exporter.default",
        include_str!("../../../config/templates/node-exporter.default.hbs"),
    ),
    (
        "postgres-exporter.default",
        include_str!("../../../config/templates/postgres-exporter.default.hbs"),
    ),
    (
        "prometheus.default",
        include_str!("../../../config/templates/prometheus.default.hbs"),
    ),
    (
        "alertmanager.default",
        include_str!("../../../config/templates/alertmanager.default.hbs"),
    ),
    (
        "prometheus.yml",
        include_str!("../../../config/templates/prometheus.yml.hbs"),
    ),
    (
        "alertmanager.yml",
        include_str!("../../../config/templates/alertmanager.yml.hbs"),
    ),
    (
        "pgnode-alerts.yml",
        include_str!("../../../config/templates/pgnode-alerts.yml.hbs"),
    ),
    (
        "pgnode-metrics.service",
        include_str!("../../../config/templates/pgnode-metrics.service.hbs"),
    ),
    (
        "pgnode-metrics.timer",
        include_str!("../../../config/templates/pgnode-metrics.timer.hbs"),
    ),
];

/// A strict registry holding every embedded template.
pub struct Templates {
    hb: Handlebars<'static>,
}

impl Templates {
    /// Builds the registry. Panics only if an embedded template does not parse, which the
    /// unit tests rule out at build time.
    pub fn new() -> Templates {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.register_escape_fn(handlebars::no_escape);
        for (name, text) in TEMPLATES {
            hb.register_template_string(name, *text)
                .unwrap_or_else(|e| panic!("embedded template {name} does not parse: {e}"));
        }
        Templates { hb }
    }

    /// Renders template `name` with `data`.
    ///
    /// Errors: [`Error::Template`] naming the template (and, from handlebars, the missing key).
    pub fn render(&self, name: &str, data: &serde_json::Value) -> Result<String> {
        self.hb.render(name, data).map_err(|e| Error::Template {
            template: format!("config/templates/{name}.hbs"),
            source: Box::new(e),
        })
    }
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses_and_strict_mode_names_missing_keys() {
        let t = Templates::new();
        let e = t
            .render(
                "known_hosts",
                &serde_json::json!({"backup": {"address": "10.0.0.3"}}),
            )
            .unwrap_err();
        let msg = format!("{e}: {}", std::error::Error::source(&e).unwrap());
        assert!(msg.contains("known_hosts.hbs"), "{msg}");
        assert!(msg.contains("backup_host_public_key"), "{msg}");
    }
}
