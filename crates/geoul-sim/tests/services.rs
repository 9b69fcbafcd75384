//! The service framework in simulation: calls reach the service, failures are
//! typed, a panicking handler costs one call (not the node), and a retry with
//! the same idempotency key after a lost reply is answered without running
//! again — on any node.

use std::time::Duration;

use geoul_client::wire::{ApiRequest, ApiResponse, Call, Failure, SessionFloor, Stamp, Touch};
use geoul_sim::cluster::{SimCluster, SimOptions};
use geoul_sim::echo::{EchoRequest, SIM_SERVICE};
use geoul_sim::{check_seeds, SimServices};

fn call(request: &EchoRequest, key: &str, idem: Option<&str>) -> ApiRequest {
    ApiRequest::Call(Call {
        service: SIM_SERVICE.into(),
        key: Some(key.as_bytes().to_vec()),
        payload: postcard::to_stdvec(request).expect("encodes"),
        timeout_ms: 5_000,
        idempotency_key: idem.map(|k| k.as_bytes().to_vec()),
        session: Default::default(),
        json: false,
    })
}

fn reply(answer: ApiResponse) -> Result<Vec<u8>, String> {
    match answer {
        ApiResponse::Reply(r) => Ok(r.payload),
        other => Err(format!("expected a reply, got {other:?}")),
    }
}

fn counter(bytes: &[u8]) -> Result<i64, String> {
    let answer: Vec<u8> = postcard::from_bytes(bytes).map_err(|e| e.to_string())?;
    let raw: [u8; 8] = answer
        .try_into()
        .map_err(|_| "counter is not 8 bytes".to_string())?;
    Ok(i64::from_le_bytes(raw))
}

fn failure(answer: ApiResponse) -> Result<Failure, String> {
    match answer {
        ApiResponse::Failed(f) => Ok(f),
        other => Err(format!("expected a failure, got {other:?}")),
    }
}

fn started(seed: u64) -> Result<SimCluster<'static>, String> {
    let options = SimOptions {
        services: SimServices {
            counters: true,
            ..SimServices::default()
        },
        ..SimOptions::default()
    };
    let mut c = SimCluster::new(seed, options);
    c.run_until(Duration::from_secs(20), "converge", SimCluster::converged)?;
    c.run_until(Duration::from_secs(20), "sync", SimCluster::synced)?;
    Ok(c)
}

#[test]
fn calls_are_served_and_failures_are_typed_and_contained() {
    check_seeds("services_typed", 5, |seed| {
        let mut c = started(seed)?;
        let echo = EchoRequest::Echo(b"hello".to_vec());
        let answer = reply(c.call_api("node-2", "node-1", call(&echo, "k", None))?)?;
        let bytes: Vec<u8> = postcard::from_bytes(&answer).map_err(|e| e.to_string())?;
        if bytes != b"hello" {
            return Err(format!("echo answered {bytes:?}"));
        }
        let reject = EchoRequest::Reject("no seats left".into());
        match failure(c.call_api("node-2", "node-1", call(&reject, "k", None))?)? {
            Failure::Rejected { reason, service }
                if reason == "no seats left" && service == SIM_SERVICE => {}
            other => return Err(format!("rejection came back as {other:?}")),
        }
        match failure(c.call_api("node-2", "node-1", call(&EchoRequest::Panic, "k", None))?)? {
            Failure::Internal(service) if service == SIM_SERVICE => {}
            other => return Err(format!("a panic came back as {other:?}")),
        }
        // The node that panicked still serves.
        reply(c.call_api("node-2", "node-1", call(&echo, "k", None))?)?;
        let mut unknown = call(&echo, "k", None);
        if let ApiRequest::Call(ref mut c) = unknown {
            c.service = "nope".into();
        }
        match failure(c.call_api("node-2", "node-1", unknown)?)? {
            Failure::NotHosted { service, node } if service == "nope" && node == "node-1" => {}
            other => return Err(format!("an unknown service came back as {other:?}")),
        }
        let mut garbage = call(&echo, "k", None);
        if let ApiRequest::Call(ref mut c) = garbage {
            c.payload = vec![0xFF; 9];
        }
        match failure(c.call_api("node-2", "node-1", garbage)?)? {
            Failure::BadRequest(reason) if reason.contains("not a request of service sim") => {}
            other => return Err(format!("a bad payload came back as {other:?}")),
        }
        Ok(())
    });
}

#[test]
fn a_retry_after_a_lost_reply_is_not_applied_twice() {
    check_seeds("services_idempotency", 5, |seed| {
        let mut c = started(seed)?;
        let slow = EchoRequest::CountSlowly {
            name: "visits".into(),
            delay_ms: 400,
        };
        // The call reaches node-1, then node-2 is cut off from it: node-1
        // applies the call but its reply is lost.
        let rx = c.submit_api("node-2", "node-1", call(&slow, "visits", Some("attempt-1")))?;
        c.run_for(Duration::from_millis(100))?;
        c.partition(&["node-2"], &["node-1"]);
        let lost = c.wait_reply(rx);
        if lost.is_ok() {
            return Err(format!("the reply was not lost: {lost:?}"));
        }
        c.heal(&["node-2"], &["node-1"]);
        c.run_for(Duration::from_secs(3))?;
        // The retry goes to another node: the answer recorded there wins.
        let first = counter(&reply(c.call_api(
            "node-3",
            "node-4",
            call(&slow, "visits", Some("attempt-1")),
        )?)?)?;
        if first != 1 {
            return Err(format!("the retry answered {first}, not the recorded 1"));
        }
        let read = counter(&reply(c.call_api(
            "node-5",
            "node-5",
            call(&EchoRequest::Read("visits".into()), "visits", None),
        )?)?)?;
        if read != 1 {
            return Err(format!("the counter is {read}: the call was applied twice"));
        }
        // Another key is another request.
        let second = counter(&reply(c.call_api(
            "node-3",
            "node-1",
            call(&slow, "visits", Some("attempt-2")),
        )?)?)?;
        if second != 2 {
            return Err(format!("a new idempotency key answered {second}, not 2"));
        }
        Ok(())
    });
}

fn read_counter(c: &mut SimCluster, via: &str, name: &str) -> Result<i64, String> {
    counter(&reply(c.call_api(
        via,
        via,
        call(&EchoRequest::Read(name.into()), name, None),
    )?)?)
}

#[test]
fn one_way_messages_limits_and_deadlines() {
    check_seeds("services_oneway", 3, |seed| {
        let mut c = started(seed)?;
        let names = c.names().to_vec();
        // A handler's own ServiceRef broadcasts to every host...
        let sent = counter(&reply(c.call_api(
            "node-1",
            "node-1",
            call(&EchoRequest::Broadcast("b".into()), "b", None),
        )?)?)?;
        if sent != names.len() as i64 {
            return Err(format!(
                "broadcast queued on {sent} of {} hosts",
                names.len()
            ));
        }
        // ...and sends one-way to exactly one.
        let send = EchoRequest::Send {
            key: "some-key".into(),
            tag: "s".into(),
        };
        reply(c.call_api("node-2", "node-2", call(&send, "x", None))?)?;
        c.run_for(Duration::from_secs(2))?;
        let mut sends = 0;
        for n in &names {
            let got = read_counter(&mut c, "node-3", &format!("seen/{n}/b"))?;
            if got != 1 {
                return Err(format!("{n} received the broadcast {got} times"));
            }
            sends += read_counter(&mut c, "node-3", &format!("seen/{n}/s"))?;
        }
        if sends != 1 {
            return Err(format!("a one-way send was delivered {sends} times"));
        }
        // Two calls run, two wait, the fifth is refused before it runs.
        let pending: Vec<_> = (0..5)
            .map(|i| {
                let slow = EchoRequest::CountSlowly {
                    name: format!("busy-{i}"),
                    delay_ms: 500,
                };
                c.submit_api("node-2", "node-1", call(&slow, "busy", None))
            })
            .collect::<Result<_, _>>()?;
        let mut overloaded = 0;
        for rx in pending {
            match c.wait_reply(rx)? {
                ApiResponse::Reply(_) => {}
                ApiResponse::Failed(Failure::Overloaded(s)) if s == SIM_SERVICE => overloaded += 1,
                other => return Err(format!("a busy call answered {other:?}")),
            }
        }
        if overloaded != 1 {
            return Err(format!("{overloaded} of 5 calls were refused, expected 1"));
        }
        // A call past its deadline says so.
        let mut late = call(
            &EchoRequest::CountSlowly {
                name: "late".into(),
                delay_ms: 1_000,
            },
            "late",
            None,
        );
        if let ApiRequest::Call(ref mut call) = late {
            call.timeout_ms = 300;
        }
        match failure(c.call_api("node-2", "node-1", late)?)? {
            Failure::DeadlineExceeded => Ok(()),
            other => Err(format!("a late call answered {other:?}")),
        }
    });
}

fn kv_call(request: &geoul_node::kv::KvRequest, key: &str, floor: Option<Touch>) -> ApiRequest {
    ApiRequest::Call(Call {
        service: geoul_node::kv::KV.into(),
        key: Some(key.as_bytes().to_vec()),
        payload: postcard::to_stdvec(request).expect("encodes"),
        timeout_ms: 2_000,
        idempotency_key: None,
        session: SessionFloor {
            hlc: floor.as_ref().map_or(0, |t| t.version.ts),
            floors: floor.into_iter().collect(),
        },
        json: false,
    })
}

fn kv_answer(answer: ApiResponse) -> Result<geoul_node::kv::KvResponse, String> {
    postcard::from_bytes(&reply(answer)?).map_err(|e| e.to_string())
}

#[test]
fn a_session_never_reads_older_than_what_it_wrote() {
    use geoul_node::kv::{KvRequest, KvResponse};
    use geoul_placement::{slot_of, PlacementMap, Replication};
    check_seeds("services_session", 5, |seed| {
        let mut c = started(seed)?;
        let names = c.names().to_vec();
        let key = "profile";
        let map =
            PlacementMap::compute(&names, Replication::Factor(3)).map_err(|e| e.to_string())?;
        let replicas: Vec<String> = map
            .replicas(slot_of(key.as_bytes()))
            .map(str::to_string)
            .collect();
        let (a, b) = (replicas[0].clone(), replicas[1].clone());
        let set = |value: &str, ack| KvRequest::Set {
            key: key.as_bytes().to_vec(),
            value: value.into(),
            ttl_ms: None,
            ack: Some(ack),
            timeout_ms: 2_000,
        };
        kv_answer(c.call_api(
            &a,
            &a,
            kv_call(&set("old", geoul_store::Ack::All), key, None),
        )?)?;
        // `b` misses the new value: it is cut off while `a` writes at `One`.
        let others: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|n| *n != b)
            .collect();
        c.partition(&[b.as_str()], &others);
        let written = kv_answer(c.call_api(
            &a,
            &a,
            kv_call(&set("new", geoul_store::Ack::One), key, None),
        )?)?;
        let KvResponse::Written {
            version, origin, ..
        } = written
        else {
            return Err(format!("the write answered {written:?}"));
        };
        c.heal(&[b.as_str()], &others);
        // The session read goes to `b` at once, before anti-entropy: it must
        // still see what the session wrote.
        let floor = Touch {
            table: geoul_node::kv::KV.into(),
            key: key.as_bytes().to_vec(),
            version: Stamp {
                ts: version,
                origin,
            },
        };
        let get = KvRequest::Get {
            key: key.as_bytes().to_vec(),
            level: geoul_replication::ReadLevel::One,
            timeout_ms: 2_000,
        };
        match kv_answer(c.call_api(&b, &b, kv_call(&get, key, Some(floor)))?)? {
            KvResponse::Value(Some(v)) if v.value == "new" => Ok(()),
            other => Err(format!(
                "{b} answered {other:?} to a session that wrote \"new\""
            )),
        }
    });
}
