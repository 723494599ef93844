//! How things look on the terminal: game boards, msg data, times.

use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// A game event: a header, the board as a 3x3 grid and a status line (with a prompt when
/// the turn is `me`'s: names compare ignoring ASCII case, as the server's do).
pub fn render_game(prefix: &str, user: &str, state: &Value, me: &str) -> String {
    let game = state["game"].as_str().unwrap_or("?");
    let board = state["board"].as_array().filter(|cells| cells.len() == 9);
    let (Some(board), "tictactoe") = (board, game) else {
        return format!("{prefix} * game by {user}: {}", text_of(state));
    };
    let seat = |mark: &str| state["players"][mark].as_str().map(clean);
    let name_or_free = |mark: &str| seat(mark).unwrap_or_else(|| "(free)".to_owned());
    // "alice (X)", or just the name when the user no longer holds a seat.
    let with_mark = |name: &str| match ["X", "O"]
        .into_iter()
        .find(|&mark| state["players"][mark].as_str() == Some(name))
    {
        Some(mark) => format!("{} ({mark})", clean(name)),
        None => clean(name),
    };
    let moves = match state["moves"].as_u64() {
        Some(1) => "1 move".to_owned(),
        Some(n) => format!("{n} moves"),
        None => "? moves".to_owned(),
    };
    let mut out = format!(
        "{prefix} * tictactoe ({user}): X {}, O {}, {moves}",
        name_or_free("X"),
        name_or_free("O"),
    );
    for (row, cells) in board.chunks(3).enumerate() {
        let cells: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(col, cell)| match cell.as_str() {
                Some(mark) => clean(mark),
                None => (row * 3 + col).to_string(),
            })
            .collect();
        if row > 0 {
            out.push_str("\n  ---+---+---");
        }
        out.push_str("\n   ");
        out.push_str(&cells.join(" | "));
    }
    out.push('\n');
    let name = |key: &str| state[key].as_str().unwrap_or("?");
    let status = match state["status"].as_str().unwrap_or("?") {
        "waiting" => "   waiting for a second player: /game join".to_owned(),
        "playing" => {
            let turn = name("turn");
            let you = if turn.eq_ignore_ascii_case(me) {
                " - your move: /game move N"
            } else {
                ""
            };
            format!("   turn: {}{you}", with_mark(turn))
        }
        "won" => {
            let winner = name("winner");
            let how = match (state["line"].as_array(), state["forfeit"].as_str()) {
                (Some(line), _) => {
                    let cells: Vec<String> = line.iter().map(Value::to_string).collect();
                    format!("line {}", cells.join("-"))
                }
                (None, Some(quitter)) => format!("{} forfeited", clean(quitter)),
                (None, None) => "won".to_owned(),
            };
            format!(
                "   winner: {}, {how}; /game restart for another round",
                with_mark(winner)
            )
        }
        "draw" => "   draw; /game restart for another round".to_owned(),
        other => format!("   status: {}", clean(other)),
    };
    out.push_str(&status);
    out
}

/// A msg's data for the terminal: strings as they are, anything else as JSON.
pub fn text_of(data: &Value) -> String {
    match data {
        Value::String(text) => clean(text),
        other => clean(&other.to_string()),
    }
}

/// Escapes control characters so a peer cannot move the cursor or clear the screen.
pub fn clean(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Prints a line (or block) at once; a closed stdout is not worth a panic.
pub fn say(text: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `HH:MM:SS` in the local time zone for a UNIX time in seconds.
pub fn clock(unix: f64) -> String {
    let secs = if unix.is_finite() {
        unix.floor() as i64
    } else {
        0
    };
    match chrono::DateTime::from_timestamp(secs, 0) {
        Some(utc) => utc
            .with_timezone(&chrono::Local)
            .format("%H:%M:%S")
            .to_string(),
        None => "--:--:--".to_owned(),
    }
}
