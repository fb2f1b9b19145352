//! `/proxy.pac`: the PAC script browsers load to find their proxy. Alone, it names this proxy. With
//! `--pac-peer HOST:PORT` it spreads hosts over the nodes of a tier without a front balancer: the
//! script ranks the nodes by rendezvous (highest random weight) hashing of the request's host, so every
//! host has one owner whose cache holds it, the others follow as fallbacks, and a node's loss moves only
//! the hosts it owned. The browser tries the list in order when a node does not answer.
//!
//! The hash runs in the browser's PAC engine, so it is written for ES3 (no `Math.imul`): FNV-1a over
//! `node + " " + host` in UTF-16 code units, then murmur3's finaliser so nearby strings spread;
//! [`rank`] is the same computation in Rust, and the tests run the script with `node` to hold the two
//! together.

/// The hash of the script, in Rust: FNV-1a 32 over UTF-16 code units, then the murmur3 finaliser.
pub fn weight(node: &str, host: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for unit in node
        .encode_utf16()
        .chain(" ".encode_utf16())
        .chain(host.encode_utf16())
    {
        h ^= u32::from(unit);
        h = h.wrapping_mul(0x0100_0193);
    }
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// The nodes in the order the script gives for `host`: highest weight first, ties by name.
pub fn rank<'a>(nodes: &[&'a str], host: &str) -> Vec<&'a str> {
    let mut ranked: Vec<(u32, &str)> = nodes.iter().map(|n| (weight(n, host), *n)).collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    ranked.into_iter().map(|(_, n)| n).collect()
}

/// The script: `this_node` (as the client reached it) alone, or with the peers, deduplicated and
/// sorted so every node of the tier serves the same script.
pub fn script(this_node: &str, peers: &[String]) -> String {
    if peers.is_empty() {
        return format!(
            "function FindProxyForURL(url, host) {{\n  \
             if (url.substring(0, 5) === \"http:\" || url.substring(0, 6) === \"https:\") {{\n    \
             return \"PROXY {this_node}\";\n  }}\n  return \"DIRECT\";\n}}\n"
        );
    }
    let mut nodes: Vec<&str> = peers.iter().map(String::as_str).collect();
    nodes.push(this_node);
    nodes.sort_unstable();
    nodes.dedup();
    let list: Vec<String> = nodes.iter().map(|n| format!("\"{n}\"")).collect();
    format!(
        r#"// Porter tier: rendezvous hashing of the host over the nodes, the others as fallbacks.
var PORTER_NODES = [{list}];
function porterMul(a, b) {{
  return ((((a >>> 16) * b) & 0xffff) * 65536 + (a & 0xffff) * b) >>> 0;
}}
function porterWeight(node, host) {{
  var s = node + " " + host, h = 0x811c9dc5, i;
  for (i = 0; i < s.length; i++) {{
    h = porterMul((h ^ s.charCodeAt(i)) >>> 0, 0x01000193);
  }}
  h = (h ^ (h >>> 16)) >>> 0;
  h = porterMul(h, 0x85ebca6b);
  h = (h ^ (h >>> 13)) >>> 0;
  h = porterMul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}}
function porterRank(host) {{
  var ranked = [], i;
  for (i = 0; i < PORTER_NODES.length; i++) {{
    ranked.push({{ node: PORTER_NODES[i], weight: porterWeight(PORTER_NODES[i], host) }});
  }}
  ranked.sort(function (a, b) {{
    if (a.weight !== b.weight) {{ return b.weight - a.weight; }}
    return a.node < b.node ? -1 : (a.node > b.node ? 1 : 0);
  }});
  var out = [];
  for (i = 0; i < ranked.length; i++) {{ out.push("PROXY " + ranked[i].node); }}
  return out.join("; ");
}}
function FindProxyForURL(url, host) {{
  if (url.substring(0, 5) === "http:" || url.substring(0, 6) === "https:") {{
    return porterRank(host.toLowerCase());
  }}
  return "DIRECT";
}}
"#,
        list = list.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const NODES: [&str; 3] = ["127.0.0.1:3128", "127.0.0.2:3128", "127.0.0.3:3128"];

    fn hosts() -> Vec<String> {
        (0..3000).map(|i| format!("host{i}.example.com")).collect()
    }

    #[test]
    fn every_node_gets_a_share_and_removing_one_moves_only_its_hosts() {
        let hosts = hosts();
        let mut share: HashMap<&str, usize> = HashMap::new();
        for host in &hosts {
            *share.entry(rank(&NODES, host)[0]).or_default() += 1;
        }
        for node in NODES {
            // A fair share is 1000 of 3000; rendezvous hashing stays well within a quarter of it.
            let n = share.get(node).copied().unwrap_or(0);
            assert!((750..1250).contains(&n), "{node} owns {n} of 3000 hosts");
        }
        let survivors = [NODES[0], NODES[2]];
        let mut moved = 0;
        for host in &hosts {
            let before = rank(&NODES, host);
            let after = rank(&survivors, host);
            if before[0] == NODES[1] {
                moved += 1;
                // The lost node's hosts go to what was their first fallback.
                assert_eq!(after[0], before[1], "{host}");
            } else {
                assert_eq!(after[0], before[0], "{host} moved though its node stayed");
            }
        }
        assert_eq!(moved, share[NODES[1]]);
    }

    #[test]
    fn a_node_alone_serves_the_plain_script() {
        let text = script("127.0.0.1:3128", &[]);
        assert!(text.contains("return \"PROXY 127.0.0.1:3128\";"));
        assert!(!text.contains("PORTER_NODES"));
        let tier = script(
            "127.0.0.2:3128",
            &["127.0.0.3:3128".into(), "127.0.0.1:3128".into()],
        );
        let from_other = script(
            "127.0.0.1:3128",
            &["127.0.0.2:3128".into(), "127.0.0.3:3128".into()],
        );
        assert_eq!(tier, from_other, "every node serves the same script");
    }

    /// Runs the generated script in `node` for many hosts and compares each answer with [`rank`].
    #[test]
    fn the_script_run_by_node_ranks_hosts_as_rank_does() {
        let available = std::process::Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !available {
            // The rule of tests/integration/util.rs `skip_unless_ci`: fail under PORTER_CI, else say so.
            assert!(
                std::env::var_os("PORTER_CI").is_none_or(|v| v.is_empty() || v == "0"),
                "node is not installed; PORTER_CI is set, so CI must provide it (apt-get install nodejs)"
            );
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {}: node is not installed (apt-get install nodejs; with PORTER_CI=1 this fails)",
                std::thread::current().name().unwrap_or("this test")
            );
            return;
        }
        let peers: Vec<String> = NODES[1..].iter().map(|n| n.to_string()).collect();
        let mut program = script(NODES[0], &peers);
        program.push_str(
            "var hosts = require('fs').readFileSync(0, 'utf8').split('\\n').filter(Boolean);\n\
             for (var i = 0; i < hosts.length; i++) {\n  \
             console.log(FindProxyForURL('http://' + hosts[i] + '/', hosts[i]));\n}\n",
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pac.js");
        std::fs::write(&path, program).unwrap();
        let mut hosts = hosts();
        hosts.truncate(500);
        hosts.push("Ünïcode.example".to_lowercase());
        let mut child = std::process::Command::new("node")
            .arg(&path)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(hosts.join("\n").as_bytes()).unwrap();
        drop(stdin);
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        let lines: Vec<String> = String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        assert_eq!(lines.len(), hosts.len());
        let mut owners = HashMap::new();
        for (host, line) in hosts.iter().zip(&lines) {
            let expected: Vec<String> = rank(&NODES, host)
                .iter()
                .map(|n| format!("PROXY {n}"))
                .collect();
            assert_eq!(*line, expected.join("; "), "{host}");
            *owners.entry(rank(&NODES, host)[0]).or_insert(0) += 1;
        }
        assert_eq!(owners.len(), 3, "every node owns some hosts: {owners:?}");
    }
}
