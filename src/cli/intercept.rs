//! The command line of HTTPS interception: `porter proxy --intercept` and its flags, and `porter ca`.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use crate::net::acl::HostPattern;
use crate::proxy::InterceptConfig;
use crate::tls::{CaError, CertificateAuthority, install, trust};

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
    /// Print the CA's subject, validity and SHA-256 fingerprint, where it is trusted on this
    /// machine, and how to make each client trust it.
    Show(PlacesArgs),
    /// Make this machine's clients trust the CA: the system store (as root), browsers' NSS
    /// databases, Java's cacerts, and a bundle + env snippet for clients with their own roots.
    /// Without a target flag, every target the running user can change; each says what it did, or
    /// what needs root and the command for it. Running it again changes nothing.
    Install(TrustArgs),
    /// Undo `porter ca install` (give the same flags): removes only what install added, for this
    /// CA only. Running it again changes nothing.
    Uninstall(TrustArgs),
}

/// Where `porter ca show`, `install` and `uninstall` look.
#[derive(Debug, Args)]
pub struct PlacesArgs {
    /// Take every system path (the system store, its bundle) under DIR, for tests and for building
    /// images; under another root than `/` files are placed but update-ca-certificates is not run.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,

    /// The Java keystore to change or check instead of the JDK's cacerts (password `changeit`).
    #[arg(long, value_name = "FILE")]
    pub java_keystore: Option<PathBuf>,
}

/// The targets of `porter ca install` and `uninstall`.
#[derive(Debug, Args)]
pub struct TrustArgs {
    /// The system store: /usr/local/share/ca-certificates/porter-ca.crt and update-ca-certificates
    /// (Debian, Ubuntu), or /etc/pki/ca-trust/source/anchors/porter-ca.crt and update-ca-trust
    /// (RHEL, Fedora). Also points pip (/etc/pip.conf `cert`) and npm (its global npmrc `cafile`)
    /// at the system bundle, unless they name a CA already. Needs root.
    #[arg(long)]
    pub system: bool,

    /// Browsers: Chromium's $HOME/.pki/nssdb (created if missing) and each Firefox profile's
    /// database, with certutil; the nickname holds the CA's fingerprint. Under sudo, the invoking
    /// user's home, changed as that user.
    #[arg(long)]
    pub nss: bool,

    /// Java: the cacerts of the JDK whose keytool is found (or --java-keystore), alias
    /// porter-ca-FINGERPRINT.
    #[arg(long)]
    pub java: bool,

    /// The bundle DIR/bundle.pem (the system's roots + the CA) and a shell snippet exporting
    /// SSL_CERT_FILE, REQUESTS_CA_BUNDLE, PIP_CERT, CARGO_HTTP_CAINFO, GIT_SSL_CAINFO and more,
    /// written to FILE (default DIR/env.sh) and printed.
    #[arg(long, value_name = "FILE", num_args = 0..=1)]
    #[allow(clippy::option_option)]
    pub env: Option<Option<PathBuf>>,

    #[command(flatten)]
    pub places: PlacesArgs,
}

/// Why `porter ca` failed.
#[derive(Debug)]
pub enum CaRunError {
    Ca(CaError),
    /// Some asked-for targets of install or uninstall did not end as asked (the report says why).
    Incomplete(Vec<String>),
}

impl std::fmt::Display for CaRunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CaRunError::Ca(e) => e.fmt(f),
            CaRunError::Incomplete(places) => {
                write!(f, "not done: {}", places.join(", "))
            }
        }
    }
}

impl std::error::Error for CaRunError {}

impl From<CaError> for CaRunError {
    fn from(e: CaError) -> CaRunError {
        CaRunError::Ca(e)
    }
}

impl PlacesArgs {
    fn places(&self) -> install::Places {
        install::Places {
            root: self.root.clone(),
            java_keystore: self.java_keystore.clone(),
            ..install::Places::from_env()
        }
    }
}

impl CaArgs {
    /// Runs the action, printing what it did; an error after the report for targets not done.
    pub fn run(&self) -> Result<(), CaRunError> {
        match &self.action {
            CaAction::Install(args) => return self.trust(install::Direction::Install, args),
            CaAction::Uninstall(args) => return self.trust(install::Direction::Uninstall, args),
            CaAction::Init | CaAction::Show(_) => {}
        }
        let ca = match self.action {
            CaAction::Init => CertificateAuthority::init(&self.ca_dir)?,
            _ => CertificateAuthority::load(&self.ca_dir)?,
        };
        let summary = ca.summary();
        let mut out = String::new();
        if let CaAction::Init = self.action {
            out.push_str(&format!("created a CA in {}\n", self.ca_dir.display()));
        }
        out.push_str(&format!(
            "certificate:  {}\nsubject:      {}\nvalid from:   {}\nvalid until:  {}\nSHA-256:      {}\n\n",
            ca.cert_path().display(),
            summary.subject,
            summary.not_before,
            summary.not_after,
            summary.fingerprint,
        ));
        if let CaAction::Show(places) = &self.action {
            out.push_str(&install::trusted_by(
                &install::Subject::new(&ca),
                &places.places(),
            ));
            out.push('\n');
        }
        out.push_str(&trust::instructions(&ca.cert_path()));
        out.push('\n');
        print!("{out}");
        Ok(())
    }

    /// `porter ca install` or `uninstall`: every asked target (all when none is named), a line each.
    fn trust(&self, direction: install::Direction, args: &TrustArgs) -> Result<(), CaRunError> {
        use install::Target;
        let subject = install::Subject::load(&self.ca_dir)?;
        let mut places = args.places.places();
        places.env_file = args.env.clone().flatten();
        let named: Vec<Target> = [
            (args.system, Target::System),
            (args.nss, Target::Nss),
            (args.java, Target::Java),
            (args.env.is_some(), Target::Env),
        ]
        .into_iter()
        .filter_map(|(on, target)| on.then_some(target))
        .collect();
        let explicit = !named.is_empty();
        let targets = if explicit {
            named
        } else {
            vec![Target::System, Target::Nss, Target::Java, Target::Env]
        };
        let steps = install::run(direction, &targets, &subject, &places);
        let mut out = format!(
            "{} Porter's CA {} (SHA-256 {}):\n",
            match direction {
                install::Direction::Install => "Installing",
                install::Direction::Uninstall => "Uninstalling",
            },
            subject.cert_path.display(),
            subject.fingerprint
        );
        for step in &steps {
            out.push_str(&format!(
                "  {:<10} {}: {}\n",
                step.outcome.as_str(),
                step.place,
                step.outcome
            ));
        }
        if direction == install::Direction::Install && targets.contains(&Target::Env) {
            out.push_str("\nFor clients with roots of their own, in this shell:\n");
            out.push_str(&install::env::snippet(&subject, &places));
            out.push('\n');
            out.push_str(&install::env::more_clients(&subject));
        }
        print!("{out}");
        let not_done: Vec<String> = steps
            .iter()
            .filter(|step| {
                matches!(step.outcome, install::Outcome::Failed(_))
                    || (explicit && !step.outcome.succeeded())
            })
            .map(|step| step.place.clone())
            .collect();
        if not_done.is_empty() {
            Ok(())
        } else {
            Err(CaRunError::Incomplete(not_done))
        }
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
