//! The server's own pages, apart from files: the ban page, the center of the pop, the balance pages
//! of `/getbalance` and the JSON of `/getlogs`. All are per client or per moment, so none may be
//! stored by a cache (`Cache-Control: no-store`).

use std::net::IpAddr;
use std::time::Instant;

use super::events::EventLog;
use super::export::Export;
use super::faults::{Draw, Outcome, format_money};
use super::limits::{Ban, BanScope};
use super::path::target_query;
use super::reply::{Body, Reply, page_html};
use crate::html;

/// 403 for a banned address, saying why and for how long.
pub fn banned(ip: IpAddr, ban: &Ban, now: Instant) -> Reply {
    let until = match ban.until {
        None => "It lasts until the server restarts.".to_string(),
        Some(until) => {
            let left = until.saturating_duration_since(now);
            // Whole seconds, rounded up, so the page never says "0s" while the ban holds.
            let secs = left.as_millis().div_ceil(1000).max(1);
            format!("It ends in {secs}s.")
        }
    };
    let message = match ban.scope {
        BanScope::Address => format!(
            "Requests without a visitor cookie from your address {ip} are banned for sending {}. \
             {until} Browsers that keep the visitor cookie are not banned for loading pages.",
            ban.reason.explain()
        ),
        BanScope::Visitor => format!(
            "Your visitor cookie is banned for sending {}. {until} \
             Pause between pages, as a person does, and you will not be banned.",
            ban.reason.explain()
        ),
    };
    Reply::page(403, "403 Forbidden: banned", &message)
}

/// The page `/` shows from a client's Nth request on.
pub fn center_of_the_pop(nth: u64) -> Reply {
    let html = page_html(
        "The center of the pop",
        &format!(
            "How many requests does it take to get to the center of the pop? \
             For you, {nth}. Congratulations: you have reached the center. \
             Every other page still works as before."
        ),
    );
    Reply::html(200, html).header("X-Center-Of-The-Pop", "reached")
}

/// The response for a drawn `/getbalance` outcome (not for a timeout, which has none).
pub fn balance(draw: &Draw) -> Reply {
    match draw.outcome {
        Outcome::Forbidden => Reply::page(
            403,
            "403 Forbidden",
            "The bank refused to show this balance (a simulated fault).",
        ),
        Outcome::Error => Reply::page(
            500,
            "500 Internal Server Error",
            "The bank's ledger failed (a simulated fault). Try again.",
        ),
        Outcome::Ok | Outcome::Timeout => {
            let amount = html::escape(&format_money(draw.balance_cents));
            Reply::html(
                200,
                page_html(
                    "Your balance",
                    &format!("Account balance: <strong id=\"balance\">${amount}</strong>"),
                ),
            )
        }
    }
}

/// `/getlogs` and `/getlogs?limit=N`: the newest events as a JSON array, oldest first.
pub fn logs(target: &str, log: &EventLog) -> Reply {
    let mut limit = None;
    if let Some(query) = target_query(target) {
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if key == "limit" {
                match value.trim().parse::<u64>() {
                    Ok(n) => limit = Some(n),
                    Err(_) => {
                        return Reply::error(
                            400,
                            &format!("limit must be a whole number, not {value:?}"),
                        );
                    }
                }
            }
        }
    }
    match Export::open(log.path(), limit) {
        Ok(export) => Reply::new(200, Body::Events(export))
            .header("Content-Type", "application/json")
            .header("Cache-Control", "no-store"),
        Err(e) => {
            log::warn!("cannot read event log {}: {e}", log.path().display());
            Reply::error(500, "the event log cannot be read")
        }
    }
}
