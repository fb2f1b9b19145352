//! A registry that redirects blob requests to an HTTPS storage host, fetched through Porter's
//! interception: the body of the signed `https://` URL is stored under the digest the redirected
//! blob request named, and the next blob request is answered with it instead of the redirect.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{digest_of, metric, noise};
use crate::intercept::{Setup, get_inside, tls_through};
use crate::tls::TlsOrigin;
use crate::util::{Origin, proxy_get};

#[test]
fn a_blob_redirected_to_https_storage_is_stored_through_interception_and_served_in_its_place() {
    let layer = noise(2024, 200_000);
    let digest = digest_of(&layer);
    let body = layer.clone();
    let storage = TlsOrigin::start_with(move |_, path, _| match path.contains("X-Signature=") {
        true => (200, vec![], body.clone()),
        false => (403, vec![], b"unsigned".to_vec()),
    });
    let setup = Setup::with_origin(storage);
    let porter = setup.proxy(&[]);
    let storage_port = setup.origin.addr.port();
    let signatures = Arc::new(AtomicUsize::new(0));
    let signed = Arc::clone(&signatures);
    let registry = Origin::start(move |_, path, headers| {
        let token = crate::util::header_value(headers, "authorization");
        if token.as_deref() != Some("Bearer good") {
            let challenge = "Bearer realm=\"http://auth.test/token\",service=\"r\"".to_string();
            return (
                401,
                vec![("WWW-Authenticate".into(), challenge)],
                b"{}".to_vec(),
            );
        }
        let n = signed.fetch_add(1, Ordering::SeqCst);
        let hex = &path[path.len() - 64..];
        let location = format!("https://localhost:{storage_port}/store/{hex}?X-Signature={n}");
        (307, vec![("Location".into(), location)], Vec::new())
    });
    let blob_url = registry.url(&format!("/v2/team/app/blobs/{digest}"));
    let bearer = [("Authorization", "Bearer good")];

    let redirect = proxy_get(porter.addr, &blob_url, &bearer);
    assert_eq!(redirect.status, 307);
    let location = redirect.header("location").unwrap().to_string();
    let path = &location[location.find("/store/").unwrap()..];
    let target = format!("localhost:{storage_port}");
    let mut tunnel = tls_through(porter.addr, &target, "localhost", &setup.porter_ca());
    let fetched = get_inside(&mut tunnel, &target, path, true);
    assert_eq!((fetched.status, fetched.body == layer), (200, true));
    assert_eq!(setup.origin.hits(), 1);
    assert_eq!(metric(porter.addr, "porter_digest_stored_total"), 1);

    let served = proxy_get(porter.addr, &blob_url, &bearer);
    assert_eq!((served.status, served.body == layer), (200, true));
    assert_eq!(
        served.header("docker-content-digest"),
        Some(digest.as_str())
    );
    assert_eq!(
        setup.origin.hits(),
        1,
        "the storage host saw no second request"
    );
    assert_eq!(
        signatures.load(Ordering::SeqCst),
        2,
        "the registry was asked both times"
    );
    let refused = proxy_get(porter.addr, &blob_url, &[("Authorization", "Bearer bad")]);
    assert_eq!((refused.status, refused.body.len()), (401, 2));
}
