//! Unit tests of [`SimEtcd`]. Expectations follow etcd 3.4 as seen through flt's driver (many
//! mirror `tests/tests/etcd.rs`, which runs them against a real etcd); the differential test
//! checks the rest against a real etcd op by op.

use super::*;

fn t(ms: u64) -> Instant {
    Instant::from_epoch(Duration::from_millis(ms))
}

fn get(etcd: &mut SimEtcd, key: &str, recursive: bool) -> Result<(Node, u64), Failure> {
    let request = Request::Get {
        key: key.into(),
        recursive,
    };
    match etcd.apply(&request, etcd.now())? {
        Reply::Got { node, index } => Ok((node, index)),
        other => panic!("Get answered {other:?}"),
    }
}

fn put_at(
    etcd: &mut SimEtcd,
    key: &str,
    value: PutValue,
    ttl: Option<Duration>,
    precondition: Precondition,
    now: Instant,
) -> Result<Node, Failure> {
    let request = Request::Put {
        key: key.into(),
        value,
        ttl,
        precondition,
    };
    match etcd.apply(&request, now)? {
        Reply::Put { node } => Ok(node),
        other => panic!("Put answered {other:?}"),
    }
}

fn put_with(
    etcd: &mut SimEtcd,
    key: &str,
    value: PutValue,
    ttl: Option<Duration>,
    precondition: Precondition,
) -> Result<Node, Failure> {
    let now = etcd.now();
    put_at(etcd, key, value, ttl, precondition, now)
}

fn value(v: &str) -> PutValue {
    PutValue::Value(v.into())
}

fn put(etcd: &mut SimEtcd, key: &str, v: &str) -> Node {
    put_with(etcd, key, value(v), None, Precondition::None).unwrap()
}

fn delete(
    etcd: &mut SimEtcd,
    key: &str,
    precondition: Precondition,
    recursive: bool,
) -> Result<u64, Failure> {
    let request = Request::Delete {
        key: key.into(),
        precondition,
        recursive,
    };
    match etcd.apply(&request, etcd.now())? {
        Reply::Deleted { index } => Ok(index),
        other => panic!("Delete answered {other:?}"),
    }
}

fn drain(etcd: &mut SimEtcd, watch: WatchId) -> Vec<Result<Event, Failure>> {
    std::iter::from_fn(|| etcd.poll_watch(watch)).collect()
}

fn events(etcd: &mut SimEtcd, watch: WatchId) -> Vec<(Action, String, Option<String>)> {
    drain(etcd, watch)
        .into_iter()
        .map(|e| {
            let e = e.unwrap();
            (e.action, e.node.key, e.node.value)
        })
        .collect()
}

#[test]
fn keys_are_cleaned_like_go_paths() {
    assert_eq!(clean_key(""), "/");
    assert_eq!(clean_key("a//b/"), "/a/b");
    assert_eq!(clean_key("/a/./b/../c"), "/a/c");
    assert_eq!(clean_key("/.."), "/");
}

#[test]
fn sorted_recursive_and_one_level_reads_with_indexes() {
    let mut etcd = SimEtcd::with_index(4);
    let written = put(&mut etcd, "/p/b/2", "two");
    assert_eq!(
        (written.key.as_str(), written.value.as_deref()),
        ("/p/b/2", Some("two"))
    );
    assert_eq!((written.created_index, written.modified_index), (5, 5));
    put(&mut etcd, "/p/a", "one");
    put(&mut etcd, "/p/b/1", "uno");
    put(&mut etcd, "/p/c", "");
    put(&mut etcd, "/p/_hidden", "h");
    put(&mut etcd, "/other/x", "not under /p");
    assert_eq!(etcd.index(), 10);

    let (node, index) = get(&mut etcd, "/p", true).unwrap();
    assert_eq!(index, 10);
    let keys: Vec<(&str, Option<&str>)> = node
        .walk()
        .map(|n| (n.key.as_str(), n.value.as_deref()))
        .collect();
    assert_eq!(
        keys,
        [
            ("/p", None),
            ("/p/a", Some("one")),
            ("/p/b", None),
            ("/p/b/1", Some("uno")),
            ("/p/b/2", Some("two")),
            ("/p/c", Some("")),
        ],
        "hidden keys are not listed"
    );
    // Intermediate directories take the index of the write that made them.
    assert!(node.dir && node.value.is_none());
    assert_eq!((node.created_index, node.modified_index), (5, 5));
    // One level: directories without children.
    let (node, _) = get(&mut etcd, "/p", false).unwrap();
    assert_eq!(node.nodes.len(), 3);
    assert!(node.nodes[1].dir && node.nodes[1].nodes.is_empty());
    // A hidden key can be read directly; the root lists only visible keys.
    let (hidden, _) = get(&mut etcd, "/p/_hidden", false).unwrap();
    assert_eq!(hidden.value.as_deref(), Some("h"));
    let (root, _) = get(&mut etcd, "/", false).unwrap();
    assert_eq!(root.key, "/");
    assert_eq!(
        root.nodes
            .iter()
            .map(|n| n.key.as_str())
            .collect::<Vec<_>>(),
        ["/other", "/p"]
    );

    assert_eq!(get(&mut etcd, "/p/missing", false), Err(Failure::NotFound));
    assert_eq!(
        get(&mut etcd, "/p/a/under-a-file", false),
        Err(Failure::Rejected {
            code: 104,
            message: "Not a directory (/p/a)".into()
        })
    );
    let deleted = delete(&mut etcd, "/p/a", Precondition::None, false).unwrap();
    assert_eq!(deleted, 11);
    assert_eq!(
        delete(&mut etcd, "/p/a", Precondition::None, false),
        Err(Failure::NotFound)
    );
    assert_eq!(
        delete(&mut etcd, "/p/b", Precondition::None, false),
        Err(Failure::Rejected {
            code: 102,
            message: "Not a file (/p/b)".into()
        }),
        "a directory needs a recursive delete"
    );
    delete(&mut etcd, "/p", Precondition::None, true).unwrap();
    assert_eq!(get(&mut etcd, "/p/b/1", false), Err(Failure::NotFound));
    assert_eq!(etcd.value("/other/x"), Some("not under /p"));
    assert_eq!(etcd.index(), 12, "failed requests take no index");
    assert_eq!(
        put_with(&mut etcd, "/", value("x"), None, Precondition::None),
        Err(Failure::Rejected {
            code: 107,
            message: "Root is read only (/)".into()
        })
    );
}

#[test]
fn compare_and_swap_and_delete_conflicts_of_each_kind() {
    let mut etcd = SimEtcd::new();
    let e = &mut etcd;
    let key = "/cas/k";
    let pf = Err(Failure::PreconditionFailed);
    let pf_delete: Result<u64, Failure> = Err(Failure::PreconditionFailed);
    assert_eq!(
        put_with(e, key, value("x"), None, Precondition::Present),
        pf
    );
    assert_eq!(
        put_with(e, key, value("x"), None, Precondition::Index(1)),
        Err(Failure::NotFound)
    );
    assert_eq!(
        put_with(e, key, value("x"), None, Precondition::Value("y".into())),
        Err(Failure::NotFound)
    );
    let created = put_with(e, key, value("a"), None, Precondition::Absent).unwrap();
    assert_eq!(put_with(e, key, value("b"), None, Precondition::Absent), pf);
    let updated = put_with(e, key, value("b"), None, Precondition::Present).unwrap();
    assert_eq!(updated.created_index, created.created_index);
    assert!(updated.modified_index > created.modified_index);
    let stale = Precondition::Index(created.modified_index);
    assert_eq!(put_with(e, key, value("c"), None, stale), pf);
    let current = Precondition::Index(updated.modified_index);
    let swapped = put_with(e, key, value("c"), None, current).unwrap();
    assert_eq!(
        put_with(e, key, value("d"), None, Precondition::Value("b".into())),
        pf
    );
    let last = put_with(e, key, value("d"), None, Precondition::Value("c".into())).unwrap();
    assert!(last.modified_index > swapped.modified_index);
    assert_eq!(e.value(key), Some("d"));
    // An empty prevValue is refused by etcd's HTTP layer; index 0 means "no index".
    assert_eq!(
        put_with(e, key, value("z"), None, Precondition::Value(String::new())),
        Err(Failure::Rejected {
            code: 201,
            message: r#"PrevValue is Required in POST form ("prevValue" cannot be empty)"#.into()
        })
    );
    let unconditional = put_with(e, key, value("e"), None, Precondition::Index(0)).unwrap();
    assert_eq!(unconditional.created_index, unconditional.modified_index);

    assert_eq!(
        delete(e, key, Precondition::Value("c".into()), false),
        pf_delete
    );
    assert_eq!(
        delete(e, key, Precondition::Index(created.modified_index), false),
        pf_delete
    );
    delete(
        e,
        key,
        Precondition::Index(unconditional.modified_index),
        false,
    )
    .unwrap();
    put(e, key, "m1");
    delete(e, key, Precondition::Value("m1".into()), false).unwrap();
    assert_eq!(
        delete(e, key, Precondition::Value("m1".into()), false),
        Err(Failure::NotFound)
    );
    assert_eq!(delete(e, key, Precondition::Present, false), pf_delete);

    let dir = |e: &mut SimEtcd, p| put_with(e, "/cas/dir", PutValue::Directory, None, p);
    dir(e, Precondition::Absent).unwrap();
    assert_eq!(dir(e, Precondition::Absent), pf);
    let not_a_file = Err(Failure::Rejected {
        code: 102,
        message: "Not a file (/cas/dir)".into(),
    });
    assert_eq!(
        dir(e, Precondition::None),
        not_a_file,
        "set over a directory"
    );
    assert_eq!(
        put_with(e, "/cas/dir", value("v"), None, Precondition::Index(1)),
        not_a_file
    );
    assert_eq!(
        delete(e, "/cas/dir", Precondition::Index(1), true),
        not_a_file.clone().map(|_| 0)
    );
    // A directory "updated" onto an existing file writes an empty value, as etcd does.
    put(e, "/cas/file", "full");
    let emptied = put_with(
        e,
        "/cas/file",
        PutValue::Directory,
        None,
        Precondition::Present,
    );
    assert_eq!(emptied.unwrap().value.as_deref(), Some(""));
    assert_eq!(e.value("/cas/file"), Some(""));
    // A set with dir over a file replaces it.
    let replaced = dir(e, Precondition::Present).unwrap();
    assert!(replaced.dir);

    // Requests the driver refuses to send.
    assert!(matches!(
        delete(e, key, Precondition::Absent, false),
        Err(Failure::Rejected { code: 0, .. })
    ));
    for (ttl, precondition) in [
        (None, Precondition::Present),
        (Some(Duration::from_secs(1)), Precondition::Absent),
    ] {
        assert!(matches!(
            put_with(e, key, PutValue::RefreshTtl, ttl, precondition),
            Err(Failure::Rejected { code: 0, .. })
        ));
    }
    let watch = Request::Watch {
        prefix: "/".into(),
        from_index: 0,
    };
    assert!(matches!(
        e.apply(&watch, t(0)),
        Err(Failure::Rejected { code: 0, .. })
    ));
}

#[test]
fn ttl_expiry_of_keys_and_directories_and_refresh_without_waking_watchers() {
    let mut etcd = SimEtcd::new();
    let e = &mut etcd;
    let one_second = Some(Duration::from_secs(1));
    let key = put_with(e, "/ttl/key", value("v"), one_second, Precondition::None).unwrap();
    assert_eq!(key.ttl, Some(1));
    let rounded = put_with(
        e,
        "/ttl/late",
        value("l"),
        Some(Duration::from_millis(1500)),
        Precondition::None,
    )
    .unwrap();
    assert_eq!(rounded.ttl, Some(2), "whole seconds, rounded up");
    put_with(
        e,
        "/ttl/dir",
        PutValue::Directory,
        one_second,
        Precondition::None,
    )
    .unwrap();
    put(e, "/ttl/dir/child", "c");
    let states = "/refreshed/states";
    put_with(
        e,
        states,
        PutValue::Directory,
        one_second,
        Precondition::None,
    )
    .unwrap();
    put(e, &format!("{states}/a.service"), "state");
    let kept = put_with(
        e,
        "/kept/key",
        value("alive"),
        one_second,
        Precondition::None,
    )
    .unwrap();
    let kept_watch = e.open_watch("/kept", kept.modified_index + 1, t(0));
    let ttl_watch = e.open_watch("/ttl", 0, t(0));

    let long = Some(Duration::from_secs(30));
    let index_before = e.index();
    let refreshed = put_at(
        e,
        states,
        PutValue::RefreshTtl,
        long,
        Precondition::Present,
        t(500),
    )
    .unwrap();
    assert_eq!(refreshed.ttl, Some(30));
    assert_eq!(
        refreshed.modified_index,
        index_before + 1,
        "a refresh takes an index"
    );
    put_at(
        e,
        "/kept/key",
        PutValue::RefreshTtl,
        one_second,
        Precondition::None,
        t(900),
    )
    .unwrap();
    assert_eq!(e.next_expiry(), Some(t(1000)));

    e.advance(t(999));
    assert!(e.value("/ttl/key").is_some());
    e.advance(t(1000));
    assert_eq!(e.value("/ttl/key"), None);
    assert_eq!(
        e.value("/ttl/dir/child"),
        None,
        "the directory took its child"
    );
    assert_eq!(e.value("/ttl/late"), Some("l"));
    let (node, _) = get(e, "/kept/key", false).unwrap();
    assert_eq!((node.value.as_deref(), node.ttl), (Some("alive"), Some(1)));
    e.advance(t(2000));
    assert_eq!(e.value("/ttl/late"), None);

    let expired = drain(e, ttl_watch);
    let shapes: Vec<_> = expired
        .iter()
        .map(|x| {
            let x = x.as_ref().unwrap();
            let prev = x.prev_node.as_ref().unwrap();
            (
                x.action,
                x.node.key.as_str(),
                x.node.dir,
                prev.value.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        shapes,
        [
            (Action::Expire, "/ttl/dir", true, None),
            (Action::Expire, "/ttl/key", false, Some("v")),
            (Action::Expire, "/ttl/late", false, Some("l")),
        ]
    );
    let first = expired[0].as_ref().unwrap();
    assert_eq!(first.node.value, None);
    assert_eq!(
        first.node.created_index,
        first.prev_node.as_ref().unwrap().created_index
    );

    let (dir, _) = get(e, states, true).unwrap();
    assert_eq!(dir.ttl, Some(29));
    assert_eq!(dir.nodes[0].value.as_deref(), Some("state"));

    // The refreshed key expires a second after its refresh; its watcher saw only that.
    e.advance(t(1900));
    let seen = events(e, kept_watch);
    assert_eq!(seen, [(Action::Expire, "/kept/key".into(), None)]);

    let refresh = PutValue::RefreshTtl;
    assert_eq!(
        put_with(
            e,
            "/kept/none",
            refresh.clone(),
            one_second,
            Precondition::Present
        ),
        Err(Failure::PreconditionFailed)
    );
    assert_eq!(
        put_with(e, "/kept/none", refresh, one_second, Precondition::None),
        Err(Failure::NotFound)
    );
    // A plain update drops the TTL.
    put_with(e, "/ttl/p", value("1"), one_second, Precondition::None).unwrap();
    let permanent = put_with(e, "/ttl/p", value("2"), None, Precondition::Present).unwrap();
    assert_eq!(permanent.ttl, None);
    e.advance(t(10_000));
    assert_eq!(e.value("/ttl/p"), Some("2"));
}

#[test]
fn watch_delivers_each_change_once_in_order_from_an_index() {
    let mut etcd = SimEtcd::new();
    let e = &mut etcd;
    let (_, index) = get(e, "/", false).unwrap();
    let watch = e.open_watch("/w", index + 1, t(0));
    let from_now = e.open_watch("/w", 0, t(0));
    put(e, "/w/a", "1");
    put(e, "/elsewhere", "ignored");
    put(e, "/wx", "not below /w");
    put_with(e, "/w/b", value("2"), None, Precondition::Absent).unwrap();
    put_with(e, "/w/a", value("3"), None, Precondition::Value("1".into())).unwrap();
    delete(e, "/w/b", Precondition::None, false).unwrap();
    put(e, "/w/_hidden", "h");
    let expected = vec![
        (Action::Set, "/w/a".to_string(), Some("1".to_string())),
        (Action::Create, "/w/b".into(), Some("2".into())),
        (Action::CompareAndSwap, "/w/a".into(), Some("3".into())),
        (Action::Delete, "/w/b".into(), None),
    ];
    assert_eq!(events(e, watch), expected);
    assert_eq!(events(e, from_now), expected);

    // Resumed from an index: the changes made meanwhile, replayed from the history.
    let last = put(e, "/w/c", "4").modified_index;
    put(e, "/w/d", "5");
    let resumed = e.open_watch("/w", last, t(0));
    let seen = events(e, resumed);
    assert_eq!(
        seen.iter().map(|s| s.1.as_str()).collect::<Vec<_>>(),
        ["/w/c", "/w/d"]
    );
    // Shapes: a Set over a key carries the old node; a Delete of a directory says so.
    put(e, "/w/c", "again");
    put(e, "/w/dir/x", "x");
    delete(e, "/w/dir", Precondition::None, true).unwrap();
    let items = drain(e, resumed);
    let set = items[0].as_ref().unwrap();
    assert_eq!(set.prev_node.as_ref().unwrap().value.as_deref(), Some("4"));
    assert_eq!(set.node.created_index, set.node.modified_index);
    let removed = items[2].as_ref().unwrap();
    assert_eq!(
        (
            removed.action,
            removed.node.dir,
            removed.prev_node.as_ref().unwrap().dir
        ),
        (Action::Delete, true, true)
    );
    assert!(removed.prev_node.as_ref().unwrap().nodes.is_empty());

    // The removal of a directory above the prefix ends what is below it.
    let deep = e.open_watch("/up/down", 0, t(0));
    put(e, "/up/down/k", "v");
    delete(e, "/up", Precondition::None, true).unwrap();
    let seen = events(e, deep);
    assert_eq!(
        seen,
        [
            (Action::Set, "/up/down/k".into(), Some("v".into())),
            (Action::Delete, "/up".into(), None)
        ]
    );
    assert!(e.cancel_watch(deep));
    assert!(!e.cancel_watch(deep));
}

#[test]
fn history_lost_after_1000_changes_then_reread_and_watch_again() {
    let mut etcd = SimEtcd::new();
    let e = &mut etcd;
    let (_, behind) = get(e, "/", false).unwrap();
    for i in 0..1100 {
        put(e, &format!("/busy/{}", i % 10), &i.to_string());
    }
    assert_eq!(e.history_start(), e.index() - 999);
    let watch = e.open_watch("/busy", behind + 1, t(0));
    assert_eq!(
        drain(e, watch),
        [Err(Failure::HistoryLost { index: e.index() })]
    );
    assert_eq!(e.watch_count(), 0, "the watch ended");
    // The oldest remembered index still works.
    let oldest = e.open_watch("/busy", e.history_start(), t(0));
    assert_eq!(drain(e, oldest).len(), 1000);
    let (node, index) = get(e, "/busy", true).unwrap();
    assert_eq!(node.nodes[9].value.as_deref(), Some("1099"));
    let watch = e.open_watch("/busy", index + 1, t(0));
    put(e, "/busy/new", "after");
    assert_eq!(
        events(e, watch),
        [(Action::Set, "/busy/new".into(), Some("after".into()))]
    );
}

#[test]
fn a_cut_off_client_fails_fast_and_its_watch_resumes_or_loses_history() {
    let mut etcd = SimEtcd::new();
    let e = &mut etcd;
    let (a, b) = (ClientId(1), ClientId(2));
    let get_k = Request::Get {
        key: "/k".into(),
        recursive: false,
    };
    let watch_a = e.open_watch_for(a, "/k", 0, t(0));
    let watch_b = e.open_watch_for(b, "/k", 0, t(0));
    put(e, "/k", "1");
    e.set_reachable(a, false, t(10));
    assert!(!e.is_reachable(a));
    assert!(matches!(
        e.call(a, &get_k, t(10)),
        Err(Failure::Unreachable(_))
    ));
    assert!(e.call(b, &get_k, t(10)).is_ok());
    put(e, "/k", "2");
    assert_eq!(
        events(e, watch_a),
        [(Action::Set, "/k".into(), Some("1".into()))]
    );
    e.set_reachable(a, true, t(20));
    assert_eq!(
        events(e, watch_a),
        [(Action::Set, "/k".into(), Some("2".into()))],
        "caught up after the outage"
    );
    assert_eq!(events(e, watch_b).len(), 2);

    // Applied, but the answer never came back.
    let write = Request::Put {
        key: "/k".into(),
        value: value("3"),
        ttl: None,
        precondition: Precondition::Value("2".into()),
    };
    assert_eq!(e.call_losing_reply(b, &write, t(30)), Failure::Timeout);
    assert_eq!(e.value("/k"), Some("3"));
    e.set_reachable(b, false, t(30));
    assert!(matches!(
        e.call_losing_reply(b, &write, t(30)),
        Failure::Unreachable(_)
    ));

    // An outage longer than the history ends the watch with HistoryLost.
    for i in 0..=HISTORY_CAPACITY {
        put(e, "/other", &i.to_string());
    }
    e.set_reachable(b, true, t(40));
    let items = drain(e, watch_b);
    assert_eq!(
        items.last(),
        Some(&Err(Failure::HistoryLost { index: e.index() }))
    );
    // The other client's watch got the write and stays open.
    let (id, item) = e.poll_any_watch().unwrap();
    assert_eq!(id, watch_a);
    assert_eq!(item.unwrap().action, Action::CompareAndSwap);
    assert_eq!(e.poll_any_watch(), None);
    assert_eq!(e.watch_count(), 1);
}
