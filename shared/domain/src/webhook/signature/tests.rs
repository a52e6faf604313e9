//! Signature rules, pinned by the published test vectors (docs/reference.md) and by one test per way a request
//! can be forged, replayed or malformed.

use super::*;

const NOW: i64 = 1_700_000_000;
const BODY: &[u8] = br#"{"type":"ENTITY_CHANGED","object":{"uri":"entities/0Abc"}}"#;
const CURRENT: &str = "current-secret";
const PREVIOUS: &str = "previous-secret";

fn secrets(list: &[&str]) -> WebhookSecrets {
    WebhookSecrets::new(list).expect("at least one secret")
}

fn headers(pairs: &[(&str, &str)]) -> RequestHeaders {
    pairs.iter().copied().collect()
}

fn check(pairs: &[(&str, &str)], body: &[u8], with: &[&str]) -> Result<Verified, Rejection> {
    verify(
        &headers(pairs),
        body,
        &secrets(with),
        NOW,
        VerifyOptions::default(),
    )
}

#[test]
fn the_github_style_published_vector_verifies() {
    // docs/reference.md: secret `It's a Secret to Everybody`, body `Hello, World!`.
    let expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert_eq!(
        sign_reltio("It's a Secret to Everybody", None, b"Hello, World!"),
        expected
    );
    let ok = check(
        &[("X-Reltio-Signature", expected)],
        b"Hello, World!",
        &["It's a Secret to Everybody"],
    )
    .unwrap();
    assert_eq!(ok.scheme, Scheme::Reltio);
    assert_eq!(ok.timestamp, None);
    // Bare hex (no `sha256=`) and upper-case hex are the same signature.
    let bare = expected.trim_start_matches("sha256=").to_ascii_uppercase();
    assert!(check(
        &[("x-reltio-signature", &bare)],
        b"Hello, World!",
        &["It's a Secret to Everybody"]
    )
    .is_ok());
}

#[test]
fn the_standard_webhooks_published_vector_verifies() {
    // docs/reference.md: Standard Webhooks test vector.
    let secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let id = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    let ts = 1_649_367_553;
    let body = br#"{"email":"test@example.com","username":"test_user"}"#;
    let expected = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";
    assert_eq!(
        sign_standard(secret, id, ts, body).as_deref(),
        Some(expected)
    );
    let ok = verify(
        &headers(&[
            ("webhook-id", id),
            ("webhook-timestamp", "1649367553"),
            ("webhook-signature", expected),
        ]),
        body,
        &secrets(&[secret]),
        ts + 10,
        VerifyOptions::default(),
    )
    .unwrap();
    assert_eq!(ok.scheme, Scheme::StandardWebhooks);
    assert_eq!(ok.timestamp, Some(ts));
    assert_eq!(ok.webhook_id.as_deref(), Some(id));
}

#[test]
fn a_tampered_body_is_a_mismatch() {
    let sig = sign_reltio(CURRENT, None, BODY);
    let mut tampered = BODY.to_vec();
    tampered[10] ^= 1;
    assert_eq!(
        check(&[("X-Reltio-Signature", &sig)], &tampered, &[CURRENT]),
        Err(Rejection::Mismatch)
    );
    // One byte of trailing whitespace is a different body too: the raw bytes are what is signed.
    let mut spaced = BODY.to_vec();
    spaced.push(b'\n');
    assert_eq!(
        check(&[("X-Reltio-Signature", &sig)], &spaced, &[CURRENT]),
        Err(Rejection::Mismatch)
    );
}

#[test]
fn a_signature_made_with_another_secret_is_a_mismatch() {
    let sig = sign_reltio("not-our-secret", None, BODY);
    assert_eq!(
        check(&[("X-Reltio-Signature", &sig)], BODY, &[CURRENT, PREVIOUS]),
        Err(Rejection::Mismatch)
    );
    let std = sign_standard("whsec_bm90LW91ci1zZWNyZXQ=", "msg_1", NOW, BODY).unwrap();
    assert_eq!(
        check(
            &[
                ("webhook-id", "msg_1"),
                ("webhook-timestamp", &NOW.to_string()),
                ("webhook-signature", &std)
            ],
            BODY,
            &["whsec_Y3VycmVudC1zZWNyZXQ="]
        ),
        Err(Rejection::Mismatch)
    );
}

#[test]
fn the_previous_secret_is_still_accepted_during_rotation() {
    let sig = sign_reltio(PREVIOUS, None, BODY);
    assert!(check(&[("X-Reltio-Signature", &sig)], BODY, &[CURRENT, PREVIOUS]).is_ok());
    // ...and not once it has left the list.
    assert_eq!(
        check(&[("X-Reltio-Signature", &sig)], BODY, &[CURRENT]),
        Err(Rejection::Mismatch)
    );
    let std = sign_standard("whsec_cHJldmlvdXM=", "msg_2", NOW, BODY).unwrap();
    assert!(check(
        &[
            ("webhook-id", "msg_2"),
            ("webhook-timestamp", &NOW.to_string()),
            ("webhook-signature", &std)
        ],
        BODY,
        &["whsec_Y3VycmVudA==", "whsec_cHJldmlvdXM="]
    )
    .is_ok());
}

#[test]
fn secrets_are_trimmed_and_blank_ones_dropped() {
    let sig = sign_reltio(CURRENT, None, BODY);
    let s = WebhookSecrets::new([format!("  {CURRENT}\n"), "   ".to_owned()]).unwrap();
    assert_eq!(s.len(), 1);
    assert!(verify(
        &headers(&[("X-Reltio-Signature", &sig)]),
        BODY,
        &s,
        NOW,
        VerifyOptions::default()
    )
    .is_ok());
    assert!(WebhookSecrets::new(["", " "]).is_none());
    assert!(!format!("{s:?}").contains(CURRENT));
}

#[test]
fn a_request_without_any_signature_header_is_missing() {
    assert_eq!(
        check(&[("Content-Type", "application/json")], BODY, &[CURRENT]),
        Err(Rejection::Missing)
    );
    // A timestamp alone signs nothing.
    assert_eq!(
        check(
            &[("X-Reltio-Timestamp", &NOW.to_string())],
            BODY,
            &[CURRENT]
        ),
        Err(Rejection::Missing)
    );
}

#[test]
fn malformed_signature_headers_are_rejected_as_malformed() {
    for bad in [
        "sha256=not-hex",
        "sha256=abcd",
        "sha1=757107ea0eb2509fc211221cce984b8a37570b6d",
        "md5=xyz",
        "zz",
    ] {
        assert_eq!(
            check(&[("X-Reltio-Signature", bad)], BODY, &[CURRENT]),
            Err(Rejection::Malformed),
            "{bad}"
        );
    }
    let std_ts = NOW.to_string();
    for bad in ["v1,!!!notbase64", "v1,YWJj", "v2,abc", "garbage"] {
        assert_eq!(
            check(
                &[
                    ("webhook-id", "msg_1"),
                    ("webhook-timestamp", &std_ts),
                    ("webhook-signature", bad)
                ],
                BODY,
                &[CURRENT]
            ),
            Err(Rejection::Malformed),
            "{bad}"
        );
    }
    // A Standard Webhooks signature without its id or timestamp cannot be checked.
    let sig = sign_standard(CURRENT, "msg_1", NOW, BODY).unwrap();
    assert_eq!(
        check(
            &[("webhook-timestamp", &std_ts), ("webhook-signature", &sig)],
            BODY,
            &[CURRENT]
        ),
        Err(Rejection::Malformed)
    );
    assert_eq!(
        check(
            &[("webhook-id", "msg_1"), ("webhook-signature", &sig)],
            BODY,
            &[CURRENT]
        ),
        Err(Rejection::Malformed)
    );
}

#[test]
fn malformed_timestamps_are_rejected_even_with_a_valid_signature() {
    for ts in [
        "",
        "soon",
        "-1700000000",
        "1700000000.5",
        "+1700000000",
        "1700000000000000",
    ] {
        let sig = sign_reltio(CURRENT, None, BODY);
        assert_eq!(
            check(
                &[("X-Reltio-Signature", &sig), ("X-Reltio-Timestamp", ts)],
                BODY,
                &[CURRENT]
            ),
            Err(Rejection::Malformed),
            "{ts:?}"
        );
    }
}

#[test]
fn an_empty_signature_is_rejected_as_empty() {
    for empty in ["", "   ", "sha256=", " , ", "sha256=, sha256="] {
        assert_eq!(
            check(&[("X-Reltio-Signature", empty)], BODY, &[CURRENT]),
            Err(Rejection::Empty),
            "{empty:?}"
        );
    }
    for empty in ["", "v1,"] {
        assert_eq!(
            check(
                &[
                    ("webhook-id", "msg_1"),
                    ("webhook-timestamp", &NOW.to_string()),
                    ("webhook-signature", empty)
                ],
                BODY,
                &[CURRENT]
            ),
            Err(Rejection::Empty),
            "{empty:?}"
        );
    }
}

#[test]
fn a_signed_timestamp_covers_the_timestamp_and_the_body() {
    let ts = NOW - 10;
    let sig = sign_reltio(CURRENT, Some(ts), BODY);
    let ok = check(
        &[
            ("X-Reltio-Signature", &sig),
            ("X-Reltio-Timestamp", &ts.to_string()),
        ],
        BODY,
        &[CURRENT],
    )
    .unwrap();
    assert_eq!(ok.timestamp, Some(ts));
    // Moving the timestamp (within the window) breaks the signature: it is signed.
    assert_eq!(
        check(
            &[
                ("X-Reltio-Signature", &sig),
                ("X-Reltio-Timestamp", &(ts + 1).to_string()),
            ],
            BODY,
            &[CURRENT]
        ),
        Err(Rejection::Mismatch)
    );
    // A body-only signature does not pass once a timestamp header is present.
    let body_only = sign_reltio(CURRENT, None, BODY);
    assert_eq!(
        check(
            &[
                ("X-Reltio-Signature", &body_only),
                ("X-Reltio-Timestamp", &ts.to_string()),
            ],
            BODY,
            &[CURRENT]
        ),
        Err(Rejection::Mismatch)
    );
}

#[test]
fn a_timestamp_older_than_the_tolerance_is_too_old() {
    let ts = NOW - 301;
    let sig = sign_reltio(CURRENT, Some(ts), BODY);
    let pairs = [
        ("X-Reltio-Signature", sig.as_str()),
        ("X-Reltio-Timestamp", &ts.to_string()),
    ];
    assert_eq!(check(&pairs, BODY, &[CURRENT]), Err(Rejection::TooOld));
    // The edge of the window is inside it.
    let ts = NOW - 300;
    let sig = sign_reltio(CURRENT, Some(ts), BODY);
    assert!(check(
        &[
            ("X-Reltio-Signature", &sig),
            ("X-Reltio-Timestamp", &ts.to_string())
        ],
        BODY,
        &[CURRENT]
    )
    .is_ok());
    // Standard Webhooks has the same window.
    let old = NOW - 3600;
    let std = sign_standard(CURRENT, "msg_1", old, BODY).unwrap();
    assert_eq!(
        check(
            &[
                ("webhook-id", "msg_1"),
                ("webhook-timestamp", &old.to_string()),
                ("webhook-signature", &std)
            ],
            BODY,
            &[CURRENT]
        ),
        Err(Rejection::TooOld)
    );
}

#[test]
fn a_timestamp_beyond_the_tolerance_in_the_future_is_rejected() {
    let ts = NOW + 301;
    let sig = sign_reltio(CURRENT, Some(ts), BODY);
    assert_eq!(
        check(
            &[
                ("X-Reltio-Signature", &sig),
                ("X-Reltio-Timestamp", &ts.to_string())
            ],
            BODY,
            &[CURRENT]
        ),
        Err(Rejection::InFuture)
    );
    let std = sign_standard(CURRENT, "msg_1", ts, BODY).unwrap();
    assert_eq!(
        check(
            &[
                ("webhook-id", "msg_1"),
                ("webhook-timestamp", &ts.to_string()),
                ("webhook-signature", &std)
            ],
            BODY,
            &[CURRENT]
        ),
        Err(Rejection::InFuture)
    );
}

#[test]
fn a_request_replayed_after_the_window_is_rejected() {
    let sent_at = NOW;
    let sig = sign_reltio(CURRENT, Some(sent_at), BODY);
    let h = headers(&[
        ("X-Reltio-Signature", &sig),
        ("X-Reltio-Timestamp", &sent_at.to_string()),
    ]);
    let s = secrets(&[CURRENT]);
    let options = VerifyOptions {
        tolerance_seconds: 60,
        require_timestamp: false,
    };
    // Accepted when it arrives, and a replay inside the window still verifies (the queue deduplicates)...
    assert!(verify(&h, BODY, &s, sent_at + 1, options).is_ok());
    assert!(verify(&h, BODY, &s, sent_at + 60, options).is_ok());
    // ...but the identical request replayed later is refused.
    assert_eq!(
        verify(&h, BODY, &s, sent_at + 61, options),
        Err(Rejection::TooOld)
    );
}

#[test]
fn one_valid_signature_among_several_passes() {
    let good = sign_reltio(PREVIOUS, None, BODY);
    let wrong = sign_reltio("someone-else", None, BODY);
    let header = format!("sha256=deadbeef, {wrong},{good}");
    assert!(check(
        &[("X-Reltio-Signature", &header)],
        BODY,
        &[CURRENT, PREVIOUS]
    )
    .is_ok());
    // The same list across repeated header lines.
    assert!(check(
        &[
            ("X-Reltio-Signature", &wrong),
            ("x-reltio-signature", &good)
        ],
        BODY,
        &[CURRENT, PREVIOUS]
    )
    .is_ok());
    // None valid: mismatch.
    let header = format!("{wrong},{wrong}");
    assert_eq!(
        check(&[("X-Reltio-Signature", &header)], BODY, &[CURRENT]),
        Err(Rejection::Mismatch)
    );
    // Standard Webhooks: space-separated, other versions ignored.
    let std_good = sign_standard(CURRENT, "msg_1", NOW, BODY).unwrap();
    let std_wrong = sign_standard("whsec_d3Jvbmc=", "msg_1", NOW, BODY).unwrap();
    let list = format!("v1a,c29tZXRoaW5n {std_wrong} {std_good}");
    assert!(check(
        &[
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", &NOW.to_string()),
            ("webhook-signature", &list)
        ],
        BODY,
        &[CURRENT]
    )
    .is_ok());
}

#[test]
fn a_required_timestamp_must_be_present() {
    let sig = sign_reltio(CURRENT, None, BODY);
    let options = VerifyOptions {
        tolerance_seconds: 300,
        require_timestamp: true,
    };
    assert_eq!(
        verify(
            &headers(&[("X-Reltio-Signature", &sig)]),
            BODY,
            &secrets(&[CURRENT]),
            NOW,
            options
        ),
        Err(Rejection::TimestampMissing)
    );
    let sig = sign_reltio(CURRENT, Some(NOW), BODY);
    assert!(verify(
        &headers(&[
            ("X-Reltio-Signature", &sig),
            ("X-Reltio-Timestamp", &NOW.to_string())
        ]),
        BODY,
        &secrets(&[CURRENT]),
        NOW,
        options
    )
    .is_ok());
}

#[test]
fn header_names_match_in_any_case() {
    let sig = sign_reltio(CURRENT, Some(NOW), BODY);
    for (s, t) in [
        ("X-Reltio-Signature", "X-Reltio-Timestamp"),
        ("x-reltio-signature", "x-reltio-timestamp"),
        ("X-RELTIO-SIGNATURE", "x-ReLtIo-TiMeStAmP"),
    ] {
        assert_eq!(
            check(&[(s, &sig), (t, &NOW.to_string())], BODY, &[CURRENT])
                .unwrap()
                .timestamp,
            Some(NOW),
            "{s}"
        );
    }
    let std = sign_standard(CURRENT, "m", NOW, BODY).unwrap();
    assert!(check(
        &[
            ("Webhook-Id", "m"),
            ("WEBHOOK-TIMESTAMP", &NOW.to_string()),
            ("Webhook-Signature", &std)
        ],
        BODY,
        &[CURRENT]
    )
    .is_ok());
}

#[test]
fn either_scheme_passing_is_enough_when_both_are_present() {
    let std = sign_standard(CURRENT, "msg_1", NOW, BODY).unwrap();
    let wrong = sign_reltio("nope", None, BODY);
    let pairs = [
        ("X-Reltio-Signature", wrong.as_str()),
        ("webhook-id", "msg_1"),
        ("webhook-timestamp", &NOW.to_string()),
        ("webhook-signature", &std),
    ];
    assert_eq!(
        check(&pairs, BODY, &[CURRENT]).unwrap().scheme,
        Scheme::StandardWebhooks
    );
}

#[test]
fn secrets_without_the_whsec_prefix_work_for_standard_webhooks() {
    // Raw base64 (as some senders store it) and plain text both derive a key.
    for secret in ["C2FVsBQIhrscChlQIMV+b5sSYspob7oD", "plain text secret"] {
        let sig = sign_standard(secret, "msg_1", NOW, BODY).unwrap();
        assert!(
            check(
                &[
                    ("webhook-id", "msg_1"),
                    ("webhook-timestamp", &NOW.to_string()),
                    ("webhook-signature", &sig)
                ],
                BODY,
                &[secret]
            )
            .is_ok(),
            "{secret}"
        );
    }
    // The raw base64 form is the same key as the whsec_ form (docs/reference.md vector).
    assert_eq!(
        sign_standard(
            "C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1_649_367_553,
            br#"{"email":"test@example.com","username":"test_user"}"#
        )
        .as_deref(),
        Some("v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=")
    );
    assert_eq!(sign_standard("whsec_!!!", "m", NOW, BODY), None);
}

#[test]
fn every_rejection_has_its_own_metric() {
    let names: std::collections::HashSet<&str> =
        Rejection::ALL.iter().map(|r| r.metric()).collect();
    assert_eq!(names.len(), Rejection::ALL.len());
    assert!(names.iter().all(|n| n.starts_with("SignatureRejected")));
}
