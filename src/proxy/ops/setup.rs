//! `/setup`: one page that tells a newcomer, on every platform, how to use this proxy and (with
//! `--intercept`) how to trust its CA, with this proxy's address filled into commands to copy, in the
//! spirit of mitmproxy's mitm.it. It is open without authentication, as `/proxy.pac` and `/ca.pem`
//! are: whoever is setting a client up has nothing to log in with yet.
//!
//! The commands to trust the CA come from `tls::trust`, the list `porter ca show` prints, so the
//! two never disagree. The page also checks the browser it is shown in: a small script fetches
//! `https://setup.porter.invalid/check`. `.invalid` never resolves (RFC 6761 §6.4), so only a
//! browser that sends it through this proxy reaches anything; the proxy intercepts that CONNECT
//! whatever its `--intercept-host` rules say and answers [`check`] itself, over TLS with a leaf from
//! its CA. A fetch that succeeds means the browser trusts the CA; when it fails, a plain
//! `http://setup.porter.invalid/check` tells "not trusted" (the proxy answered) from "not using this
//! proxy" (nothing did).
//!
//! The page sends a Content-Security-Policy that admits its one style sheet and one script by hash
//! and lets the script reach only the check's two URLs, so nothing written into the page (the
//! address comes from the client's Host field) could ever run.

use std::fmt::Write as _;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::pages::{Page, status_page};
use crate::html::{self, escape};
use crate::http::authority::{self, AuthorityError, DefaultPort};
use crate::http::{Method, RequestHead, ResponseHead, Scheme};
use crate::proxy::Proxy;
use crate::tls::trust;

/// The name the proxy answers itself, for the page's check (RFC 6761 §6.4: it never resolves).
pub const CHECK_HOST: &str = "setup.porter.invalid";

/// The path of the check's answer on [`CHECK_HOST`].
pub const CHECK_PATH: &str = "/check";

/// Where the page's commands put the CA certificate.
const CA_FILE: &str = "$HOME/porter-ca.pem";

/// The page's style: the status page's, and blocks of commands that a click selects whole.
const STYLE: &str = "
pre{margin:0;white-space:pre-wrap;word-break:break-all;user-select:all;font:13px/1.4 ui-monospace,monospace}
td pre{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:6px 8px}
th{width:24%;vertical-align:top}
h3{font-size:15px;margin:18px 0 6px}
.note{color:var(--muted)}td .note{display:block;font-size:13px;margin-top:3px}
#check{font-weight:600;padding:8px 12px;border-radius:8px;border:1px solid var(--line)}
#check.trusted{color:#1a7f37}#check.untrusted,#check.unreachable{color:#cf222e}
";

/// The browser check. It only reads fixed URLs and writes fixed text: nothing in it comes from the
/// request, so its hash is the same on every page.
const SCRIPT: &str = r#"
(function () {
  var out = document.getElementById("check");
  function say(state, text) { out.className = state; out.textContent = text; }
  function probe(url) {
    return fetch(url, { cache: "no-store" }).then(function (response) {
      if (!response.ok) { throw new Error("status " + response.status); }
      return response.json();
    }).then(function (answer) {
      if (!answer || answer.porter !== "setup-check") { throw new Error("not porter"); }
    });
  }
  say("pending", "checking HTTPS through this proxy\u2026");
  probe("https://setup.porter.invalid/check").then(function () {
    say("trusted", "HTTPS through this proxy: trusted");
  }, function () {
    return probe("http://setup.porter.invalid/check").then(function () {
      say("untrusted", "HTTPS through this proxy: not trusted: install the CA (commands above)");
    }, function () {
      say("unreachable", "HTTPS check: could not reach the proxy over HTTPS: this browser does not use this proxy (see \u201cUse this proxy\u201d above)");
    });
  });
})();
"#;

/// Whether `host` (lowercase, as targets and CONNECT authorities carry it) is the check's name.
pub fn is_check_host(host: &str) -> bool {
    host == CHECK_HOST
}

/// The check's answer, over `scheme`: a tiny JSON any page may read (CORS `*`), never stored.
pub fn check(req: &RequestHead, scheme: Scheme) -> Page {
    if req.method != Method::Get && req.method != Method::Head {
        let (mut head, body) = status_page(405, "the setup check answers GET and HEAD only");
        head.headers.append("Allow", "GET, HEAD");
        return (head, body);
    }
    let (mut head, body) = if req.target.split('?').next() == Some(CHECK_PATH) {
        let mut head = ResponseHead::new(200);
        head.headers.append("Content-Type", "application/json");
        let body = format!(
            "{{\"porter\":\"setup-check\",\"scheme\":\"{}\"}}\n",
            scheme.as_str()
        );
        (head, body.into_bytes())
    } else {
        status_page(
            404,
            "setup.porter.invalid is the proxy's own name for the check of /setup: only /check is here",
        )
    };
    head.headers.set("Cache-Control", "no-store");
    head.headers.append("Access-Control-Allow-Origin", "*");
    (head, body)
}

/// The address the client reached this proxy at, to write into commands: the Host it asked for when
/// that is a plain `host[:port]` (port 80 when it names none), else the listen address. Anything
/// else in a Host field (quotes, spaces, markup) never reaches the page or a command.
pub fn address(proxy: &Proxy, req: &RequestHead) -> String {
    let parsed = req.headers.get("host").and_then(|host| {
        let host = host.trim();
        match authority::parse(host) {
            Err(AuthorityError::MissingPort) => authority::parse(&format!("{host}:80")).ok(),
            Err(_) if host.starts_with('[') && host.ends_with(']') => {
                authority::parse(&format!("{host}:80")).ok()
            }
            other => other.ok(),
        }
    });
    match parsed {
        Some((host, port)) => authority::format(&host, port, DefaultPort::Keep),
        None => proxy.local_addr.to_string(),
    }
}

/// `/setup`, for a client that reached the proxy at `address`.
pub fn page(proxy: &Proxy, address: &str) -> Page {
    let config = proxy.config.load();
    let intercepting = proxy.interceptor.is_some();
    let mut body = String::with_capacity(16 * 1024);
    let _ = write!(
        body,
        "<main>\n<header><h1>Set up Porter</h1>\
         <span class=\"meta\">proxy <code id=\"address\">{}</code></span>\
         <span class=\"meta\">HTTPS interception <span id=\"interception\">{}</span></span></header>\n\
         <p class=\"note\">Every command below names this proxy as you reached it; a click selects \
         a whole command to copy. The <a href=\"/\">status page</a> shows what the proxy does.</p>\n",
        escape(address),
        if intercepting { "on" } else { "off" },
    );
    body.push_str("<h2>Use this proxy</h2>\n");
    if !config.auth.is_empty() {
        let _ = writeln!(
            body,
            "<p id=\"auth\">This proxy asks for a user name and password: where a proxy URL goes, \
             write <code>http://USER:PASSWORD@{}</code> (browsers ask for them instead).</p>",
            escape(address)
        );
    }
    table(&mut body, "proxy-settings", &proxy_settings(address));
    body.push_str(
        "<p class=\"note\">Inside a container, 127.0.0.1 is the container itself: give it an \
         address of this host that it reaches, and admit that network with <code>--allow</code>.</p>\n",
    );
    match &proxy.interceptor {
        Some(interceptor) => trust_section(&mut body, address, &interceptor.ca().fingerprint()),
        None => body.push_str(
            "<h2>HTTPS</h2>\n<p id=\"no-interception\">This proxy does not intercept HTTPS (it \
             was started without <code>--intercept</code>): HTTPS goes through it in CONNECT \
             tunnels, untouched, so clients need no extra CA.</p>\n",
        ),
    }
    body.push_str("<footer><a href=\"/\">status</a> · <a href=\"/proxy.pac\">/proxy.pac</a>");
    if intercepting {
        body.push_str(" · <a href=\"/ca.pem\">/ca.pem</a>");
    }
    body.push_str("</footer>\n</main>");
    let css = format!("{}{STYLE}", super::dashboard::STYLE);
    let mut policy = format!(
        "default-src 'none'; style-src '{}'; img-src 'self'; base-uri 'none'; \
         form-action 'none'; frame-ancestors 'none'",
        csp_hash(&css)
    );
    if intercepting {
        let _ = write!(body, "\n<script>{SCRIPT}</script>");
        let _ = write!(
            policy,
            "; script-src '{}'; connect-src http://{CHECK_HOST} https://{CHECK_HOST}",
            csp_hash(SCRIPT)
        );
    }
    let document = html::styled_document("Set up Porter", &css, &body);
    let mut head = ResponseHead::new(200);
    head.headers
        .append("Content-Type", "text/html; charset=utf-8");
    head.headers.append("Cache-Control", "no-store");
    head.headers.append("Content-Security-Policy", policy);
    head.headers.append("X-Content-Type-Options", "nosniff");
    (head, document.into_bytes())
}

/// A CSP source for an inline element's exact text (CSP Level 3 §8.4, `'sha256-…'`).
fn csp_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// How each kind of client is pointed at the proxy at `address`.
fn proxy_settings(address: &str) -> Vec<(&'static str, String)> {
    let url = format!("http://{address}");
    let pac = format!("{url}/proxy.pac");
    vec![
        ("curl", format!("curl -x {url} https://example.com/")),
        (
            "Shell (most command-line tools)",
            format!(
                "export http_proxy={url} https_proxy={url} HTTP_PROXY={url} HTTPS_PROXY={url} \
                 no_proxy=localhost,127.0.0.1"
            ),
        ),
        ("Browsers and systems: PAC URL", pac.clone()),
        (
            "Chromium",
            format!("chromium --proxy-server={url}    (or --proxy-pac-url={pac})"),
        ),
        (
            "Firefox",
            format!("{pac}    (Settings, Network Settings, Automatic proxy configuration URL)"),
        ),
        (
            "GNOME",
            format!(
                "gsettings set org.gnome.system.proxy mode auto && \
                 gsettings set org.gnome.system.proxy autoconfig-url {pac}"
            ),
        ),
        (
            "macOS",
            format!("networksetup -setautoproxyurl Wi-Fi {pac}    (or the service you use)"),
        ),
        (
            "Windows",
            format!("{pac}    (Settings, Network & internet, Proxy, Use setup script)"),
        ),
        (
            "apt",
            format!(
                "echo 'Acquire::http::Proxy \"{url}\"; Acquire::https::Proxy \"{url}\";' | \
                 sudo tee /etc/apt/apt.conf.d/95porter-proxy"
            ),
        ),
        (
            "pip",
            format!("pip config set global.proxy {url}    (or pip install --proxy {url} ...)"),
        ),
        (
            "npm",
            format!("npm config set proxy {url} && npm config set https-proxy {url}"),
        ),
        (
            "cargo",
            format!(
                "export CARGO_HTTP_PROXY={url}    (or [http] proxy = \"{address}\" in ~/.cargo/config.toml)"
            ),
        ),
        ("git", format!("git config --global http.proxy {url}")),
        (
            "Docker daemon (pulls)",
            format!(
                "sudo mkdir -p /etc/systemd/system/docker.service.d && printf '[Service]\\n\
                 Environment=\"HTTP_PROXY={url}\" \"HTTPS_PROXY={url}\"\\n' | sudo tee \
                 /etc/systemd/system/docker.service.d/porter-proxy.conf && sudo systemctl \
                 daemon-reload && sudo systemctl restart docker    (containerd: the same for \
                 containerd.service)"
            ),
        ),
        (
            "docker build",
            format!("docker build --build-arg http_proxy={url} --build-arg https_proxy={url} ."),
        ),
        (
            "podman",
            format!(
                "export http_proxy={url} https_proxy={url}    (podman pulls through it and \
                 passes it into the containers it runs)"
            ),
        ),
    ]
}

/// What `porter ca install` does in one step, on a machine with porter and the CA's folder.
const ONE_STEP: [(&str, &str); 5] = [
    (
        "System store",
        "sudo porter ca install    (or --system: Debian/Ubuntu, RHEL/Fedora)",
    ),
    (
        "Chromium and Firefox (NSS)",
        "porter ca install --nss    (this user's NSS databases)",
    ),
    ("Java", "sudo porter ca install --java"),
    (
        "Environment variables",
        "porter ca install --env FILE    (then: . FILE)",
    ),
    ("Undo", "sudo porter ca uninstall    (the same flags)"),
];

/// The trust half of the page: download, fingerprint, one step, each system and client, the check.
fn trust_section(body: &mut String, address: &str, fingerprint: &str) {
    let _ = write!(
        body,
        "<h2>Trust Porter's CA</h2>\n<p>This proxy decrypts HTTPS and re-encrypts it with \
         certificates from its own CA, so clients must trust that CA. \
         <a href=\"/ca.pem\" id=\"ca-link\">Download it</a> and compare its SHA-256 fingerprint:</p>\n\
         <pre id=\"fingerprint\">{}</pre>\n",
        escape(fingerprint)
    );
    table(
        body,
        "ca-download",
        &[
            (
                "Download",
                format!("curl -fsS -o \"{CA_FILE}\" http://{address}/ca.pem"),
            ),
            (
                "Fingerprint",
                format!("openssl x509 -in \"{CA_FILE}\" -noout -fingerprint -sha256"),
            ),
        ],
    );
    body.push_str("<h3>In one step</h3>\n");
    let one_step: Vec<(&str, String)> = ONE_STEP
        .iter()
        .map(|(name, how)| (*name, how.to_string()))
        .collect();
    table(body, "one-step", &one_step);
    let fill = |how: &str| {
        how.replace("{ca}", CA_FILE)
            .replace("http://PROXY", &format!("http://{address}"))
    };
    let all = trust::CLIENTS.iter().chain(trust::ELSEWHERE.iter());
    let (systems, clients): (Vec<_>, Vec<_>) =
        all.partition(|(name, _)| name.contains("system store"));
    let filled = |list: Vec<&(&'static str, &str)>| -> Vec<(&'static str, String)> {
        list.into_iter()
            .map(|(name, how)| (*name, fill(how)))
            .collect()
    };
    body.push_str("<h3>Operating systems</h3>\n");
    table(body, "systems", &filled(systems));
    body.push_str("<h3>Clients</h3>\n");
    table(body, "clients", &filled(clients));
    let _ = writeln!(
        body,
        "<p class=\"note\">{}</p>",
        escape(&fill(trust::BUNDLE_NOTE))
    );
    body.push_str(
        "<h2>Check this browser</h2>\n<p id=\"check\" class=\"pending\">not checked: the check \
         needs JavaScript</p>\n",
    );
}

/// A table of (what, command) rows, the commands escaped in blocks to copy and their notes beside
/// them, outside the block, so a click copies the command alone.
fn table(body: &mut String, id: &str, rows: &[(&str, String)]) {
    let _ = writeln!(body, "<table id=\"{id}\">");
    for (name, how) in rows {
        let (command, note) = split_note(how);
        let _ = write!(
            body,
            "<tr><th>{}</th><td><pre>{}</pre>",
            escape(name),
            escape(command)
        );
        if let Some(note) = note {
            let _ = write!(body, "<span class=\"note\">{}</span>", escape(note));
        }
        body.push_str("</td></tr>\n");
    }
    body.push_str("</table>\n");
}

/// A command and its note, as `tls::trust` writes them: `COMMAND    (NOTE)`.
fn split_note(how: &str) -> (&str, Option<&str>) {
    match how.split_once("    (") {
        Some((command, rest)) if rest.ends_with(')') => {
            (command.trim_end(), Some(&rest[..rest.len() - 1]))
        }
        _ => (how, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_leave_the_command_to_copy_alone() {
        assert_eq!(
            split_note("export PIP_CERT=x    (or pip --cert x; see (this))"),
            ("export PIP_CERT=x", Some("or pip --cert x; see (this)"))
        );
        assert_eq!(split_note("git config x"), ("git config x", None));
        assert_eq!(split_note("a    (b"), ("a    (b", None));
    }

    #[test]
    fn the_csp_hash_is_base64_of_sha256() {
        // echo -n 'alert(1)' | openssl dgst -sha256 -binary | base64
        assert_eq!(
            csp_hash("alert(1)"),
            "sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI="
        );
    }

    #[test]
    fn every_trust_entry_lands_in_one_section() {
        let systems = trust::CLIENTS
            .iter()
            .chain(trust::ELSEWHERE.iter())
            .filter(|(name, _)| name.contains("system store"))
            .count();
        assert_eq!(systems, 4, "Debian/Ubuntu, RHEL/Fedora, macOS, Windows");
    }
}
