//! The flags of `porter fetch` and their conversion into a [`FetchConfig`], with the proxies
//! decided once from the flags and the environment.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::tools::fetch::proxy::redact;
use crate::tools::fetch::{
    Credentials as ProxyUser, FetchConfig, FetchError, FetchUrl, Method, Proxies, ProxyAddr,
};
use crate::units::parse_duration;

/// Flags of `porter fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// The http:// or https:// URL to fetch; one without a scheme is http:// (`localhost:8080/x`).
    #[arg(value_name = "URL")]
    pub url: String,

    /// Proxy to fetch through, as [USER:PASSWORD@]HOST:PORT (percent-encoded); https URLs go through
    /// a CONNECT tunnel. Without this flag the http_proxy or HTTP_PROXY environment variable is used
    /// (for https URLs https_proxy or HTTPS_PROXY first), except for the hosts no_proxy or NO_PROXY
    /// names.
    // A string, parsed later: clap would print a value it refuses, password and all.
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "no_proxy")]
    pub proxy: Option<String>,

    /// Credentials for the proxy, USER:PASSWORD (sent as Basic Proxy-Authorization, never printed).
    #[arg(long, value_name = "USER:PASSWORD")]
    pub proxy_user: Option<String>,

    /// Connect directly, ignoring the proxy environment variables.
    #[arg(long)]
    pub no_proxy: bool,

    /// Follow redirects (301, 302, 303, 307, 308), logging each hop.
    #[arg(short = 'L', long)]
    pub location: bool,

    /// Most redirects -L follows before giving up.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub max_redirects: u32,

    /// Save 4xx and 5xx responses too; without it an error page is read but not saved.
    #[arg(long)]
    pub save_errors: bool,

    /// Request method.
    #[arg(
        short = 'X',
        long,
        value_enum,
        default_value = "GET",
        ignore_case = true
    )]
    pub method: MethodArg,

    /// Folder the response is saved in: an HTML page as `<title>.html`, anything else under the
    /// URL's file name, with ` (2)` added rather than overwrite a file.
    #[arg(short = 'o', long, default_value = "Download", value_name = "DIR")]
    pub out_dir: PathBuf,

    /// File that each response's URL, time, status line and headers are appended to.
    #[arg(long, default_value = "download.log", value_name = "FILE")]
    pub log: PathBuf,

    /// Time allowed to connect, and for each wait for data; then the request has timed out.
    /// DUR is a number of seconds (`5` is `5s`) or a number with a unit: ms, s, m, h or d.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DUR")]
    pub timeout: Duration,

    /// Write the body (for HEAD, the head) to stdout only: nothing is saved under --out-dir and
    /// nothing is appended to --log. The request lines go to stderr.
    #[arg(long)]
    pub print: bool,

    /// Make the request N times, then print a tally of the outcomes. Exits 1 if any got no
    /// response, else 8 if any got an error status.
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub repeat: u32,

    /// Pause between repeated requests.
    /// DUR is a number of seconds (`5` is `5s`) or a number with a unit: ms, s, m, h or d.
    #[arg(long, default_value = "500ms", value_parser = parse_duration, value_name = "DUR")]
    pub interval: Duration,

    /// Also trust the CA certificate(s) in this PEM file for https.
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,

    /// Do not verify https certificates: encrypted, but the server is not authenticated.
    #[arg(long)]
    pub insecure: bool,
}

/// `-X` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MethodArg {
    #[value(name = "GET")]
    Get,
    #[value(name = "HEAD")]
    Head,
}

impl FetchArgs {
    /// The validated configuration, with the proxy taken from the process environment when no flag
    /// names one.
    pub fn into_config(self) -> Result<FetchConfig, FetchError> {
        self.into_config_with_env(|name| std::env::var(name).ok())
    }

    /// As `into_config`, reading environment variables through `var`.
    pub fn into_config_with_env(
        self,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<FetchConfig, FetchError> {
        let url = FetchUrl::parse_arg(&self.url)?;
        let mut proxies =
            match (self.proxy, self.no_proxy) {
                (Some(text), _) => Proxies::all(ProxyAddr::parse(&text).map_err(|reason| {
                    FetchError::BadProxy {
                        value: redact(&text),
                        from: "--proxy",
                        reason,
                    }
                })?),
                (None, true) => Proxies::default(),
                (None, false) => Proxies::from_env(var)?,
            };
        if let Some(text) = self.proxy_user {
            let credentials =
                ProxyUser::parse(&text).map_err(|reason| FetchError::BadProxyUser { reason })?;
            proxies = proxies.with_credentials(&credentials);
        }
        Ok(FetchConfig {
            url,
            proxies,
            save_errors: self.save_errors,
            follow: self.location,
            max_redirects: self.max_redirects,
            method: match self.method {
                MethodArg::Get => Method::Get,
                MethodArg::Head => Method::Head,
            },
            out_dir: self.out_dir,
            log: self.log,
            timeout: self.timeout,
            print: self.print,
            repeat: self.repeat,
            interval: self.interval,
            cacert: self.cacert,
            insecure: self.insecure,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn fetch(args: &[&str]) -> FetchArgs {
        let cli = Cli::try_parse_from([&["porter", "fetch"], args].concat()).unwrap();
        match cli.command {
            Command::Fetch(args) => args,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn fetch_proxy_comes_from_flag_then_environment() {
        let env = |name: &str| (name == "http_proxy").then(|| "http://envproxy:3128/".to_string());
        let chosen = |config: &FetchConfig| {
            config.proxies.for_url(&config.url).map(|p| {
                (
                    p.to_string(),
                    p.credentials.as_ref().map(|c| c.user.clone()),
                )
            })
        };
        let config = fetch(&["http://h/"]).into_config_with_env(env).unwrap();
        assert_eq!(chosen(&config), Some(("envproxy:3128".into(), None)));
        let config = fetch(&["--proxy", "u:p@flag:1", "http://h/"])
            .into_config_with_env(env)
            .unwrap();
        assert_eq!(chosen(&config), Some(("flag:1".into(), Some("u".into()))));
        let config = fetch(&["--proxy-user", "v:q", "http://h/"])
            .into_config_with_env(env)
            .unwrap();
        assert_eq!(
            chosen(&config),
            Some(("envproxy:3128".into(), Some("v".into())))
        );
        let config = fetch(&["--no-proxy", "http://h/"])
            .into_config_with_env(env)
            .unwrap();
        assert_eq!(chosen(&config), None);
        let bad = fetch(&["--proxy", "u:hunter2@nohost", "http://h/"])
            .into_config_with_env(env)
            .unwrap_err()
            .to_string();
        assert!(!bad.contains("hunter2"), "{bad}");
        let bad = fetch(&["--proxy-user", "hunter2", "http://h/"])
            .into_config_with_env(env)
            .unwrap_err()
            .to_string();
        assert!(!bad.contains("hunter2"), "{bad}");
        assert!(
            Cli::try_parse_from([
                "porter",
                "fetch",
                "--proxy",
                "a:1",
                "--no-proxy",
                "http://h/"
            ])
            .is_err()
        );
    }

    #[test]
    fn fetch_defaults_and_flags() {
        let config = fetch(&["http://h/"])
            .into_config_with_env(|_| None)
            .unwrap();
        assert_eq!(config.method, Method::Get);
        assert_eq!(config.out_dir, PathBuf::from("Download"));
        assert_eq!(config.log, PathBuf::from("download.log"));
        assert_eq!(config.timeout, Duration::from_secs(10));
        let config = fetch(&[
            "-X",
            "head",
            "-o",
            "d",
            "--repeat",
            "20",
            "--interval",
            "0ms",
            "http://h/",
        ])
        .into_config_with_env(|_| None)
        .unwrap();
        assert_eq!((config.method, config.repeat), (Method::Head, 20));
        assert_eq!(config.interval, Duration::ZERO);
        assert!(Cli::try_parse_from(["porter", "fetch", "-X", "POST", "http://h/"]).is_err());
        assert!(Cli::try_parse_from(["porter", "fetch", "--repeat", "0", "http://h/"]).is_err());
    }
}
