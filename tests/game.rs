//! protocol.md, "game": a whole game of tic-tac-toe over real sockets.

mod support;

use serde_json::{json, Value};
use support::{config, start, TestClient};

fn last_state(client: &mut TestClient) -> Value {
    let (room, event) = client.expect_event("game");
    assert_eq!(room, "table");
    event.data
}

#[test]
fn two_players_play_a_full_game_and_a_watcher_sees_it() {
    let server = start(config());
    let addr = server.local_addr();
    let mut alice = TestClient::login(addr, "alice");
    let mut bob = TestClient::login(addr, "bob");
    let mut carol = TestClient::login(addr, "carol");
    for c in [&mut alice, &mut bob, &mut carol] {
        c.client.join("table").unwrap();
    }
    // Setup only: skip lobby and join traffic until everyone has seen carol sit down.
    for c in [&mut alice, &mut bob, &mut carol] {
        loop {
            let (room, event) = c.next_event();
            if room == "table" && event.kind == "join" && event.user == "carol" {
                break;
            }
        }
    }
    carol.expect_event("list");

    alice
        .client
        .game("table", &json!({"start": "tictactoe"}))
        .unwrap();
    for c in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(last_state(c)["status"], "waiting");
    }
    bob.client.game("table", &json!({"join": true})).unwrap();
    for c in [&mut alice, &mut bob, &mut carol] {
        let state = last_state(c);
        assert_eq!(state["status"], "playing");
        assert_eq!(state["players"], json!({"X": "alice", "O": "bob"}));
    }
    // carol cannot sit or move: 422, and nothing changes.
    carol.client.game("table", &json!({"move": 0})).unwrap();
    let refusal = carol.expect_code(422);
    assert_eq!(refusal.detail, json!({"room": "table", "type": "game"}));

    // X: 0, 4, 8 (a diagonal); O: 1, 2.
    let moves = [(0, 0), (1, 1), (0, 4), (1, 2), (0, 8)];
    let mut final_state = Value::Null;
    for (player, cell) in moves {
        let mover = if player == 0 { &mut alice } else { &mut bob };
        mover.client.game("table", &json!({"move": cell})).unwrap();
        for c in [&mut alice, &mut bob, &mut carol] {
            final_state = last_state(c);
        }
    }
    assert_eq!(final_state["status"], "won");
    assert_eq!(final_state["winner"], "alice");
    assert_eq!(final_state["line"], json!([0, 4, 8]));
    assert_eq!(final_state["moves"], 5);

    bob.client.game("table", &json!({"move": 3})).unwrap();
    bob.expect_code(422);
    alice
        .client
        .game("table", &json!({"restart": true}))
        .unwrap();
    for c in [&mut alice, &mut bob, &mut carol] {
        let state = last_state(c);
        assert_eq!(state["status"], "playing");
        assert_eq!(state["moves"], 0);
    }
}
