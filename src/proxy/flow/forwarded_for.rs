//! `--forwarded-for on|off|delete|transparent`: what a forwarded request's `X-Forwarded-For` says
//! about the client, as Squid's `forwarded_for` does.
//!
//! `X-Forwarded-For` is not in an RFC (RFC 7239 `Forwarded` standardised the idea later), but it is
//! what origins, load balancers and logs read: a comma-separated list, client first, each proxy
//! appending the address it received the request from. A proxy that passes the client's own field on
//! unchanged lets any client claim any address (`X-Forwarded-For: 1.2.3.4`) to an origin that trusts
//! the last hop; appending our client's address keeps the list honest from here on.
//!
//! | mode          | the field sent upstream                                        |
//! |---------------|----------------------------------------------------------------|
//! | `on`          | the received list, then the client's address (created if none) |
//! | `off`         | the received list, then `unknown`                              |
//! | `delete`      | none: every received field removed                             |
//! | `transparent` | the received fields, unchanged                                 |

use std::net::IpAddr;

use crate::http::Headers;

const FIELD: &str = "X-Forwarded-For";

/// How `X-Forwarded-For` is treated on requests forwarded to origins and parents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ForwardedFor {
    /// Append the client's address.
    #[default]
    On,
    /// Append `unknown`: the list shows a proxy was passed without saying who the client is.
    Off,
    /// Remove the field.
    Delete,
    /// Pass the client's field on unchanged.
    Transparent,
}

impl ForwardedFor {
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardedFor::On => "on",
            ForwardedFor::Off => "off",
            ForwardedFor::Delete => "delete",
            ForwardedFor::Transparent => "transparent",
        }
    }

    /// Rewrites the outbound request's fields for a request received from `client`.
    pub fn apply(self, headers: &mut Headers, client: IpAddr) {
        let added = match self {
            ForwardedFor::Transparent => return,
            ForwardedFor::Delete => {
                headers.remove(FIELD);
                return;
            }
            // An IPv4 client on an IPv6 socket is written as the IPv4 address it is.
            ForwardedFor::On => client.to_canonical().to_string(),
            ForwardedFor::Off => "unknown".to_string(),
        };
        // Several received fields are one list (RFC 9110 §5.3): joined, then this hop appended.
        let mut value = headers.clone_value(FIELD);
        if !value.is_empty() {
            value.extend_from_slice(b", ");
        }
        value.extend_from_slice(added.as_bytes());
        headers.set(FIELD, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(mode: ForwardedFor, received: &[&str], client: &str) -> Vec<String> {
        let mut headers = Headers::new();
        headers.append("Host", "a.test");
        for value in received {
            headers.append("x-forwarded-for", value);
        }
        mode.apply(&mut headers, client.parse().unwrap());
        headers.get_all(FIELD).map(str::to_string).collect()
    }

    #[test]
    fn each_mode_rewrites_the_received_list() {
        use ForwardedFor::*;
        assert_eq!(applied(On, &[], "10.0.0.7"), ["10.0.0.7"]);
        assert_eq!(applied(On, &["1.2.3.4"], "10.0.0.7"), ["1.2.3.4, 10.0.0.7"]);
        assert_eq!(
            applied(On, &["1.2.3.4", "5.6.7.8"], "::ffff:10.0.0.7"),
            ["1.2.3.4, 5.6.7.8, 10.0.0.7"]
        );
        assert_eq!(applied(On, &[], "2001:db8::1"), ["2001:db8::1"]);
        assert_eq!(applied(Off, &["1.2.3.4"], "10.0.0.7"), ["1.2.3.4, unknown"]);
        assert_eq!(applied(Off, &[], "10.0.0.7"), ["unknown"]);
        assert!(applied(Delete, &["1.2.3.4", "5.6.7.8"], "10.0.0.7").is_empty());
        assert_eq!(
            applied(Transparent, &["1.2.3.4", "5.6.7.8"], "10.0.0.7"),
            ["1.2.3.4", "5.6.7.8"]
        );
        assert!(applied(Transparent, &[], "10.0.0.7").is_empty());
    }
}
