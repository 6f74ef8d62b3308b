use super::*;

#[test]
fn password_fields() {
    let hash = hash_password("x").unwrap();
    assert!(matches!(password_field(&hash), Ok(Password::Hash(h)) if h == hash));
    assert!(matches!(password_field("secret"), Ok(Password::Plain(p)) if p == "secret"));
    assert!(matches!(password_field("$weird"), Ok(Password::Plain(_))));
    assert!(matches!(
        password_field("$5 and $6 dollars"),
        Ok(Password::Plain(_))
    ));
    assert_eq!(password_field("").err().unwrap(), "empty password");
    for bad in [
        "$argon2id$garbage",
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ",
        "$argon2id$v=19$m=1,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
    ] {
        assert_eq!(
            password_field(bad).err().unwrap(),
            "malformed argon2id hash",
            "{bad}"
        );
    }
    let e = password_field("$2y$10$abcdefghijklmnopqrstuv")
        .err()
        .unwrap();
    assert!(e.contains("$2y$"), "{e}");
    assert!(
        password_field("$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaA")
            .err()
            .unwrap()
            .contains("only argon2id")
    );
}

#[test]
fn reader_numbers_lines_and_skips_blank_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.csv");
    let long = format!("x@x.test,{},0\n", "p".repeat(MAX_LINE));
    let mut content =
        b"\xEF\xBB\xBFaddress,password,quota\r\na@x.test,\"p,w\",1G\r\n\n  \n".to_vec();
    content.extend_from_slice(b"b@x.test,pw\n\xff@x.test,pw,0\n");
    content.extend_from_slice(long.as_bytes());
    content.extend_from_slice(b"c@x.test,pw,0");
    std::fs::write(&path, &content).unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    read_lines(std::fs::File::open(&path).unwrap(), tx).unwrap();
    let mut got = Vec::new();
    while let Ok(l) = rx.try_recv() {
        got.push(l);
    }
    let lines: Vec<u64> = got.iter().map(|l| l.line).collect();
    assert_eq!(lines, [1, 2, 5, 6, 7, 8]);
    assert_eq!(got[0].fields.as_ref().unwrap()[0], "address");
    assert_eq!(got[1].fields.as_ref().unwrap()[1], "p,w");
    assert_eq!(got[1].fields.as_ref().unwrap()[2], "1G");
    assert_eq!(got[2].fields.as_ref().unwrap().len(), 2);
    assert_eq!(got[3].fields.as_ref().unwrap_err(), "not valid UTF-8");
    assert!(
        got[4]
            .fields
            .as_ref()
            .unwrap_err()
            .starts_with("line longer than")
    );
    assert_eq!(got[5].fields.as_ref().unwrap(), &["c@x.test", "pw", "0"]);
    assert_eq!(got[5].byte, content.len() as u64);
}

#[test]
fn unquoted_phc_hashes_are_rejoined() {
    let hash = hash_password("x").unwrap();
    assert!(hash.contains(','));
    let line = format!("a@x.test,{hash},1G,s1");
    let fields = rejoin_phc(split_fields(&line).unwrap());
    assert_eq!(fields, ["a@x.test", hash.as_str(), "1G", "s1"]);
    let line = format!("a@x.test,{hash},");
    assert_eq!(rejoin_phc(split_fields(&line).unwrap()).len(), 3);
    // Plain passwords are left alone, commas and all (when quoted).
    let fields = rejoin_phc(split_fields("a@x.test,\"p=1,t=2\",0").unwrap());
    assert_eq!(fields, ["a@x.test", "p=1,t=2", "0"]);
    let fields = rejoin_phc(split_fields("a@x.test,pw,m=1,0").unwrap());
    assert_eq!(fields.len(), 4);
}

#[test]
fn fields_split_like_csv() {
    let ok = |s: &str| split_fields(s).unwrap();
    assert_eq!(ok("a,b,c"), ["a", "b", "c"]);
    assert_eq!(ok("a,,"), ["a", "", ""]);
    assert_eq!(ok("a, b ,c"), ["a", " b ", "c"]);
    assert_eq!(ok(r#"a,"x,""y""",c"#), ["a", r#"x,"y""#, "c"]);
    assert_eq!(ok(r#"a, "q" ,c"#), ["a", "q", "c"]);
    assert_eq!(ok(r#""""#), [""]);
    assert!(
        split_fields(r#"a,"open"#)
            .unwrap_err()
            .contains("unterminated")
    );
    assert!(
        split_fields(r#"a,"x"y,c"#)
            .unwrap_err()
            .contains("after the closing quote")
    );
    assert!(
        split_fields(r#"a,x"y,c"#)
            .unwrap_err()
            .contains("quote inside")
    );
}
