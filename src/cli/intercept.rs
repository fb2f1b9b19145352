//! The command line of HTTPS interception: `porter proxy --intercept` and its flags, and `porter ca`.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use crate::net::acl::HostPattern;
use crate::proxy::InterceptConfig;
use crate::tls::{CaError, CertificateAuthority, trust};

/// The interception flags of `porter proxy`.
#[derive(Debug, Args)]
pub struct InterceptArgs {
    /// Terminate TLS inside CONNECT tunnels with certificates from Porter's own CA, so HTTPS is cached.
    /// ClientHellos may span several records up to 64 KiB; a larger one gets a handshake_failure alert.
    #[arg(long)]
    pub intercept: bool,

    /// Folder of the CA (ca.pem, ca-key.pem); created on first start. Default: `ca` beside the cache folder.
    /// ca.pem must hold the certificate only (it is served at /ca.pem): one holding a private key too is
    /// refused; move the key into ca-key.pem.
    #[arg(long, value_name = "DIR")]
    pub ca_dir: Option<PathBuf>,

    /// Intercept only these hosts (repeatable): an exact host or `*.example.com`. Others are tunnelled.
    #[arg(long = "intercept-host", value_name = "PATTERN")]
    pub intercept_host: Vec<HostPattern>,

    /// Never intercept these hosts, always tunnel them (repeatable): banking, pinned or mutual-TLS hosts.
    #[arg(long = "no-intercept-host", value_name = "PATTERN")]
    pub no_intercept_host: Vec<HostPattern>,

    /// Also trust the CA certificates in this PEM file when verifying origins (repeatable). An origin
    /// whose certificate does not verify gets the client a 502 naming the cause: unknown-issuer,
    /// self-signed, ca-used-as-server-certificate (the usual `openssl req -x509` one-liner: issue a
    /// leaf from a CA and pass that CA here), name-mismatch, expired or not-yet-valid.
    #[arg(long = "upstream-ca", value_name = "FILE")]
    pub upstream_ca: Vec<PathBuf>,

    /// What to do with a client that refused Porter's certificate for a host: `off` keeps
    /// intercepting it; `tunnel` tunnels its next CONNECTs to that host, untouched, for
    /// --intercept-fallback-for (as Squid's on_ssl_bump_error splice), so pinned clients keep working.
    #[arg(long = "intercept-fallback", value_enum, default_value_t = Fallback::Off, value_name = "MODE")]
    pub intercept_fallback: Fallback,

    /// How long --intercept-fallback tunnel tunnels a client's CONNECTs to a host after it refused
    /// Porter's certificate for it.
    #[arg(long = "intercept-fallback-for", default_value = "10m", value_parser = crate::units::parse_duration, value_name = "DUR")]
    pub intercept_fallback_for: std::time::Duration,
}

/// `--intercept-fallback`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fallback {
    /// Keep intercepting; the refusal is logged and counted.
    Off,
    /// Tunnel the client's next CONNECTs to the host for --intercept-fallback-for.
    Tunnel,
}

impl InterceptArgs {
    /// The interception settings, or `None` without `--intercept`.
    pub fn into_config(self, cache_dir: Option<&Path>) -> Option<InterceptConfig> {
        if !self.intercept {
            return None;
        }
        Some(InterceptConfig {
            ca_dir: self.ca_dir.unwrap_or_else(|| default_ca_dir(cache_dir)),
            only_hosts: self.intercept_host,
            never_hosts: self.no_intercept_host,
            upstream_ca: self.upstream_ca,
            fallback_for: (self.intercept_fallback == Fallback::Tunnel)
                .then_some(self.intercept_fallback_for),
        })
    }
}

/// `ca` beside the cache folder (never inside it, so `porter cache clear` cannot remove it).
pub fn default_ca_dir(cache_dir: Option<&Path>) -> PathBuf {
    let Some(cache_dir) = cache_dir else {
        return PathBuf::from("ca");
    };
    match cache_dir.file_name() {
        // A cache folder itself called `ca` gets a CA folder that cannot be it.
        Some(name) if name == "ca" => cache_dir.with_file_name("porter-ca"),
        Some(_) => cache_dir.with_file_name("ca"),
        // `.` or `..`: beside it is one level up.
        None => cache_dir.join("..").join("porter-ca"),
    }
}

/// Flags of `porter ca`.
#[derive(Debug, Args)]
pub struct CaArgs {
    /// Folder of the CA.
    #[arg(long, default_value = "ca", value_name = "DIR", global = true)]
    pub ca_dir: PathBuf,

    #[command(subcommand)]
    pub action: CaAction,
}

#[derive(Debug, Subcommand)]
pub enum CaAction {
    /// Create a new CA: DIR/ca.pem and DIR/ca-key.pem (mode 0600, folder 0700). Refuses to overwrite one.
    Init,
    /// Print the CA's subject, validity and SHA-256 fingerprint, and how to make each client trust it.
    Show,
}

impl CaArgs {
    /// Runs the action and returns what to print.
    pub fn run(&self) -> Result<String, CaError> {
        let ca = match self.action {
            CaAction::Init => CertificateAuthority::init(&self.ca_dir)?,
            CaAction::Show => CertificateAuthority::load(&self.ca_dir)?,
        };
        let summary = ca.summary();
        let mut out = String::new();
        if let CaAction::Init = self.action {
            out.push_str(&format!("created a CA in {}\n", self.ca_dir.display()));
        }
        out.push_str(&format!(
            "certificate:  {}\nsubject:      {}\nvalid from:   {}\nvalid until:  {}\nSHA-256:      {}\n\n{}",
            ca.cert_path().display(),
            summary.subject,
            summary.not_before,
            summary.not_after,
            summary.fingerprint,
            trust::instructions(&ca.cert_path())
        ));
        out.push('\n');
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_ca_folder_is_beside_the_cache_never_inside() {
        assert_eq!(default_ca_dir(Some(Path::new("cache"))), Path::new("ca"));
        assert_eq!(
            default_ca_dir(Some(Path::new("/var/lib/porter/cache"))),
            Path::new("/var/lib/porter/ca")
        );
        assert_eq!(default_ca_dir(None), Path::new("ca"));
        assert_eq!(
            default_ca_dir(Some(Path::new("/srv/ca"))),
            Path::new("/srv/porter-ca")
        );
        assert_eq!(
            default_ca_dir(Some(Path::new("."))),
            Path::new("./../porter-ca")
        );
    }
}
