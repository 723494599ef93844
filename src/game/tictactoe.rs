//! Tic-tac-toe for two seated players, as the first server-authoritative game.
//!
//! It is small enough to read in one sitting, yet it has every situation a room game must handle:
//! seats, turns, refusals, a finish, a forfeit when someone disconnects, and another round.
//!
//! # Rules
//!
//! Cells are numbered 0..=8, row-major, 0 top-left. The first player to join sits as "X", the
//! second as "O"; the round starts when both seats are taken and X always moves first. A move is
//! the JSON integer of a cell (`{"move":4}` on the wire; the game receives the `4`). A line of
//! three (3 rows, 3 columns, 2 diagonals) wins on the move that completes it, even the ninth; a
//! full board with no line is a draw. A seated player who leaves a running round, or does not
//! move within the room's turn timeout, forfeits it and the other player wins (a timed-out
//! player keeps the seat); leaving before the round starts, or after it ends, frees the seat.
//!
//! [`Game::restart`] after a finish keeps the seated players and swaps their marks, so whoever
//! moved second last round moves first in the next one: moving first is a real advantage in
//! tic-tac-toe, and alternating it is fairer than letting the first joiner keep it forever. If a
//! seat was freed, the new round waits and the next player to join takes the empty seat.
//!
//! Every refusal is a [`GameError`] whose message is shown to the player, and leaves the state
//! exactly as it was.
//!
//! # State
//!
//! [`Game::state`] returns, for every room member after each change:
//!
//! ```json
//! {"game":"tictactoe","board":["X",null,"O",null,null,null,null,null,null],
//!  "players":{"X":"alice","O":"bob"},
//!  "turn":"alice",
//!  "status":"playing",
//!  "winner":null, "line":null,
//!  "forfeit":null,
//!  "moves":2}
//! ```
//!
//! - `board`: nine cells, each `"X"`, `"O"` or `null`.
//! - `players`: who sits in each seat, `null` for an empty seat.
//! - `turn`: the user who must move now; `null` unless `status` is `"playing"`.
//! - `status`: `"waiting"` (a seat is empty), `"playing"`, `"won"` or `"draw"`.
//! - `winner`: the winning user when `"won"`, else `null`; kept even if the winner then leaves.
//! - `line`: the three winning cells, ascending, when won by a line; `null` otherwise.
//! - `forfeit`: the user who left a running round or ran out of time on their turn (the room's
//!   turn timeout), when it was won that way; `null` otherwise.
//! - `moves`: moves played this round, always the number of filled cells.

use serde_json::{json, Value};

use super::{Game, GameError};

/// Every winning line, as ascending cell indices: 3 rows, 3 columns, 2 diagonals.
const LINES: [[usize; 3]; 8] = [
    [0, 1, 2],
    [3, 4, 5],
    [6, 7, 8],
    [0, 3, 6],
    [1, 4, 7],
    [2, 5, 8],
    [0, 4, 8],
    [2, 4, 6],
];

/// A two-player tic-tac-toe table; see the module doc for rules and the state shape.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TicTacToe {
    board: [Option<Mark>; 9],
    /// Who sits as X; swapped with `o` on restart.
    x: Option<String>,
    o: Option<String>,
    status: Status,
    /// Kept alongside the board so whose turn it is never needs a recount.
    moves: u8,
}

impl TicTacToe {
    /// An empty table waiting for two players.
    pub fn new() -> Self {
        Self::default()
    }

    /// The table a [`Game::state`] describes; `None` for anything that is not one (a wrong
    /// game, a board that does not match its move count, a line that is not a line).
    pub fn from_state(state: &Value) -> Option<Self> {
        if state.get("game")?.as_str()? != "tictactoe" {
            return None;
        }
        let cells = state.get("board")?.as_array()?;
        if cells.len() != 9 {
            return None;
        }
        let mut board = [None; 9];
        for (cell, value) in board.iter_mut().zip(cells) {
            *cell = match value.as_str() {
                Some("X") => Some(Mark::X),
                Some("O") => Some(Mark::O),
                None if value.is_null() => None,
                _ => return None,
            };
        }
        let seat = |mark: &str| -> Option<Option<String>> {
            let value = state.get("players")?.get(mark)?;
            match value {
                Value::Null => Some(None),
                Value::String(name) => Some(Some(name.clone())),
                _ => None,
            }
        };
        let name = |key: &str| state.get(key).and_then(Value::as_str).map(str::to_owned);
        let moves = u8::try_from(state.get("moves")?.as_u64()?).ok()?;
        if usize::from(moves) != board.iter().flatten().count() {
            return None;
        }
        let line = match state.get("line") {
            None | Some(Value::Null) => None,
            Some(Value::Array(cells)) => {
                let cells: Vec<usize> = cells
                    .iter()
                    .map(|c| c.as_u64().and_then(|c| usize::try_from(c).ok()))
                    .collect::<Option<_>>()?;
                let line: [usize; 3] = cells.try_into().ok()?;
                if !LINES.contains(&line) {
                    return None;
                }
                Some(line)
            }
            Some(_) => return None,
        };
        let status = match state.get("status")?.as_str()? {
            "waiting" => Status::Waiting,
            "playing" => Status::Playing,
            "draw" => Status::Draw,
            "won" => {
                let forfeit = name("forfeit");
                // Won by a line or by a forfeit: exactly one.
                if line.is_some() == forfeit.is_some() {
                    return None;
                }
                Status::Won {
                    winner: name("winner")?,
                    line,
                    forfeit,
                }
            }
            _ => return None,
        };
        Some(TicTacToe {
            board,
            x: seat("X")?,
            o: seat("O")?,
            status,
            moves,
        })
    }

    fn seat(&self, mark: Mark) -> Option<&str> {
        match mark {
            Mark::X => self.x.as_deref(),
            Mark::O => self.o.as_deref(),
        }
    }

    fn seat_mut(&mut self, mark: Mark) -> &mut Option<String> {
        match mark {
            Mark::X => &mut self.x,
            Mark::O => &mut self.o,
        }
    }

    fn mark_of(&self, player: &str) -> Option<Mark> {
        [Mark::X, Mark::O]
            .into_iter()
            .find(|&m| self.seat(m) == Some(player))
    }

    /// X moves first, so the parity of the move count names the mark to play.
    fn to_move(&self) -> Mark {
        match self.moves % 2 {
            0 => Mark::X,
            _ => Mark::O,
        }
    }

    fn completed_line(&self, mark: Mark) -> Option<[usize; 3]> {
        LINES
            .into_iter()
            .find(|line| line.iter().all(|&c| self.board[c] == Some(mark)))
    }
}

impl Game for TicTacToe {
    fn name(&self) -> &'static str {
        "tictactoe"
    }

    fn join(&mut self, player: &str) -> Result<(), GameError> {
        if let Some(mark) = self.mark_of(player) {
            return Err(refuse(format!(
                "you are already seated as {}",
                mark.as_str()
            )));
        }
        if self.status.is_finished() {
            return Err(refuse("this round is over; restart it before joining"));
        }
        // X first, so the first joiner of a fresh table is X and a freed seat is refilled as-is.
        let Some(mark) = [Mark::X, Mark::O]
            .into_iter()
            .find(|&m| self.seat(m).is_none())
        else {
            return Err(refuse("both seats are taken"));
        };
        *self.seat_mut(mark) = Some(player.to_owned());
        if self.x.is_some() && self.o.is_some() {
            self.status = Status::Playing;
        }
        Ok(())
    }

    fn leave(&mut self, player: &str) -> bool {
        let Some(mark) = self.mark_of(player) else {
            return false;
        };
        if self.status == Status::Playing {
            // A running round always has both seats taken, so the opponent is there to win.
            if let Some(winner) = self.seat(mark.other()) {
                self.status = Status::Won {
                    winner: winner.to_owned(),
                    line: None,
                    forfeit: Some(player.to_owned()),
                };
            }
        }
        *self.seat_mut(mark) = None;
        true
    }

    fn apply_move(&mut self, player: &str, mv: &Value) -> Result<(), GameError> {
        let Some(mark) = self.mark_of(player) else {
            return Err(refuse("you are not seated in this game"));
        };
        match self.status {
            Status::Playing => {}
            Status::Waiting => {
                return Err(refuse(
                    "the game has not started: waiting for a second player",
                ))
            }
            Status::Won { .. } | Status::Draw => {
                return Err(refuse("the round is over; restart to play again"))
            }
        }
        let turn = self.to_move();
        if mark != turn {
            let who = self.seat(turn).unwrap_or("the other player");
            return Err(refuse(format!("not your turn: waiting for {who}")));
        }
        let cell = parse_cell(mv)?;
        if self.board[cell].is_some() {
            return Err(refuse(format!("cell {cell} is already taken")));
        }

        self.board[cell] = Some(mark);
        self.moves += 1;
        if let Some(line) = self.completed_line(mark) {
            self.status = Status::Won {
                winner: player.to_owned(),
                line: Some(line),
                forfeit: None,
            };
        } else if self.board.iter().all(Option::is_some) {
            self.status = Status::Draw;
        }
        Ok(())
    }

    fn restart(&mut self) -> Result<(), GameError> {
        match self.status {
            Status::Won { .. } | Status::Draw => {}
            Status::Playing => return Err(refuse("the round is still being played")),
            Status::Waiting => {
                return Err(refuse(
                    "there is no finished round to restart: waiting for players",
                ))
            }
        }
        std::mem::swap(&mut self.x, &mut self.o);
        self.board = [None; 9];
        self.moves = 0;
        self.status = if self.x.is_some() && self.o.is_some() {
            Status::Playing
        } else {
            Status::Waiting
        };
        Ok(())
    }

    fn is_running(&self) -> bool {
        self.status == Status::Playing
    }

    fn turn(&self) -> Option<&str> {
        match self.status {
            Status::Playing => self.seat(self.to_move()),
            _ => None,
        }
    }

    fn time_out(&mut self, player: &str) -> bool {
        if self.turn() != Some(player) {
            return false;
        }
        let Some(winner) = self.seat(self.to_move().other()) else {
            return false;
        };
        self.status = Status::Won {
            winner: winner.to_owned(),
            line: None,
            forfeit: Some(player.to_owned()),
        };
        true
    }

    fn players(&self) -> Vec<&str> {
        [self.x.as_deref(), self.o.as_deref()]
            .into_iter()
            .flatten()
            .collect()
    }

    fn state(&self) -> Value {
        let board: Vec<Value> = self
            .board
            .iter()
            .map(|cell| cell.map_or(Value::Null, |m| Value::from(m.as_str())))
            .collect();
        let turn = match self.status {
            Status::Playing => self.seat(self.to_move()),
            _ => None,
        };
        let (status, winner, line, forfeit) = match &self.status {
            Status::Waiting => ("waiting", None, None, None),
            Status::Playing => ("playing", None, None, None),
            Status::Draw => ("draw", None, None, None),
            Status::Won {
                winner,
                line,
                forfeit,
            } => ("won", Some(winner), line.as_ref(), forfeit.as_ref()),
        };
        json!({
            "game": self.name(),
            "board": board,
            "players": { "X": self.x, "O": self.o },
            "turn": turn,
            "status": status,
            "winner": winner,
            "line": line,
            "forfeit": forfeit,
            "moves": self.moves,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    X,
    O,
}

impl Mark {
    fn as_str(self) -> &'static str {
        match self {
            Mark::X => "X",
            Mark::O => "O",
        }
    }

    fn other(self) -> Mark {
        match self {
            Mark::X => Mark::O,
            Mark::O => Mark::X,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
enum Status {
    /// A seat is empty; the board is always empty here because no move is accepted.
    #[default]
    Waiting,
    Playing,
    /// Ended by a completed `line` or by the other player's `forfeit`: exactly one is set.
    Won {
        winner: String,
        line: Option<[usize; 3]>,
        forfeit: Option<String>,
    },
    Draw,
}

impl Status {
    fn is_finished(&self) -> bool {
        matches!(self, Status::Won { .. } | Status::Draw)
    }
}

fn refuse(msg: impl Into<String>) -> GameError {
    GameError(msg.into())
}

/// Reads a cell index from the client's raw JSON, refusing anything but an integer 0..=8.
fn parse_cell(mv: &Value) -> Result<usize, GameError> {
    if let Some(n) = mv.as_u64() {
        return match usize::try_from(n) {
            Ok(cell) if cell <= 8 => Ok(cell),
            _ => Err(refuse(format!("cell {n} is out of range: pick 0 to 8"))),
        };
    }
    if let Some(n) = mv.as_i64() {
        // Only negatives reach here: every non-negative i64 is also a u64.
        return Err(refuse(format!("cell {n} is out of range: pick 0 to 8")));
    }
    // The raw value is not echoed back: it is client input of any size.
    Err(refuse("a move must be a whole cell number from 0 to 8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_comes_back_from_its_state() {
        let mut game = TicTacToe::new();
        let check = |game: &TicTacToe| {
            let back = TicTacToe::from_state(&game.state()).expect("a table's own state");
            assert_eq!(&back, game);
        };
        check(&game);
        game.join("alice").unwrap();
        check(&game);
        game.join("bob").unwrap();
        for (player, cell) in [("alice", 4), ("bob", 0), ("alice", 2), ("bob", 1)] {
            game.apply_move(player, &json!(cell)).unwrap();
            check(&game);
        }
        game.apply_move("alice", &json!(6)).unwrap();
        check(&game); // won by a line
        game.restart().unwrap();
        game.leave("bob");
        check(&game); // won by a forfeit
        game.restart().unwrap();
        check(&game); // waiting, a seat free
        game.join("carol").unwrap();
        check(&game);
        let mut bad = game.state();
        bad["moves"] = json!(3);
        assert_eq!(
            TicTacToe::from_state(&bad),
            None,
            "moves must match the board"
        );
        assert_eq!(TicTacToe::from_state(&json!({"game": "chess"})), None);
        let mut line = TicTacToe::new().state();
        line["status"] = json!("won");
        line["winner"] = json!("x");
        line["line"] = json!([0, 1, 5]);
        assert_eq!(TicTacToe::from_state(&line), None, "not a line");
    }
    use proptest::prelude::*;

    /// alice is X, bob is O, the round is running.
    fn playing() -> TicTacToe {
        let mut g = TicTacToe::new();
        g.join("alice").expect("empty table");
        g.join("bob").expect("one seat left");
        g
    }

    #[test]
    fn is_running_agrees_with_the_visible_status() {
        let mut g = TicTacToe::new();
        let agrees = |g: &TicTacToe| g.is_running() == (g.state()["status"] == "playing");
        assert!(agrees(&g) && !g.is_running());
        g.join("alice").expect("empty table");
        assert!(agrees(&g) && !g.is_running());
        g.join("bob").expect("one seat left");
        assert!(agrees(&g) && g.is_running());
        play(&mut g, &[0, 3, 1, 4, 2]);
        assert!(agrees(&g) && !g.is_running(), "won");
        g.restart().expect("finished");
        assert!(agrees(&g) && g.is_running());
        assert!(g.leave("alice"));
        assert!(agrees(&g) && !g.is_running(), "forfeit");
    }

    #[test]
    fn running_out_of_time_forfeits_the_round_but_keeps_the_seat() {
        let mut g = playing();
        assert_eq!(g.turn(), Some("alice"));
        assert!(!g.time_out("bob"), "not bob's turn");
        play(&mut g, &[4]);
        assert_eq!(g.turn(), Some("bob"));
        assert!(g.time_out("bob"));
        let state = g.state();
        assert_eq!(state["status"], "won");
        assert_eq!(state["winner"], "alice");
        assert_eq!(state["forfeit"], "bob");
        assert_eq!(state["players"]["O"], "bob", "the seat is kept");
        assert_eq!(g.turn(), None);
        assert!(!g.time_out("alice"), "nothing runs any more");
        g.restart().expect("finished");
        assert_eq!(g.turn(), Some("bob"), "marks swapped: bob is X now");
    }

    /// Plays `cells` in order, each by whoever's turn it is.
    fn play(g: &mut TicTacToe, cells: &[usize]) {
        for &cell in cells {
            let who = g
                .seat(g.to_move())
                .expect("a running round has both seats")
                .to_owned();
            g.apply_move(&who, &json!(cell))
                .unwrap_or_else(|e| panic!("move {cell} by {who} refused: {e}"));
        }
    }

    /// Asserts `f` is refused with a message containing `needle` and leaves the game untouched.
    fn assert_refused(
        g: &mut TicTacToe,
        needle: &str,
        f: impl FnOnce(&mut TicTacToe) -> Result<(), GameError>,
    ) {
        let before = g.clone();
        let state_before = g.state();
        let err = f(g).expect_err("should be refused");
        assert!(
            err.0.contains(needle),
            "message {:?} lacks {needle:?}",
            err.0
        );
        assert_eq!(*g, before);
        assert_eq!(g.state(), state_before);
    }

    #[test]
    fn fresh_table_state_has_the_documented_shape() {
        let g = TicTacToe::new();
        assert_eq!(
            g.state(),
            json!({
                "game": "tictactoe",
                "board": [null, null, null, null, null, null, null, null, null],
                "players": {"X": null, "O": null},
                "turn": null,
                "status": "waiting",
                "winner": null,
                "line": null,
                "forfeit": null,
                "moves": 0,
            })
        );
    }

    #[test]
    fn first_joiner_is_x_second_is_o_and_x_moves_first() {
        let mut g = TicTacToe::new();
        g.join("alice").expect("empty table");
        assert_eq!(g.state()["status"], "waiting");
        assert_eq!(g.state()["players"], json!({"X": "alice", "O": null}));
        g.join("bob").expect("one seat left");
        let s = g.state();
        assert_eq!(s["players"], json!({"X": "alice", "O": "bob"}));
        assert_eq!(s["status"], "playing");
        assert_eq!(s["turn"], "alice");
    }

    #[test]
    fn moves_alternate_and_show_on_the_board() {
        let mut g = playing();
        g.apply_move("alice", &json!(4)).expect("alice's turn");
        assert_eq!(g.state()["turn"], "bob");
        g.apply_move("bob", &json!(0)).expect("bob's turn");
        let s = g.state();
        assert_eq!(
            s["board"],
            json!(["O", null, null, null, "X", null, null, null, null])
        );
        assert_eq!(s["moves"], 2);
        assert_eq!(s["turn"], "alice");
        assert_eq!(s["status"], "playing");
    }

    #[test]
    fn join_refusals_leave_state_unchanged() {
        let mut g = TicTacToe::new();
        g.join("alice").expect("empty table");
        assert_refused(&mut g, "already seated as X", |g| g.join("alice"));
        g.join("bob").expect("one seat left");
        assert_refused(&mut g, "already seated as O", |g| g.join("bob"));
        assert_refused(&mut g, "both seats are taken", |g| g.join("carol"));
        play(&mut g, &[0, 3, 1, 4, 2]);
        assert!(g.leave("bob"));
        assert_refused(&mut g, "round is over", |g| g.join("carol"));
    }

    #[test]
    fn move_by_unseated_player_is_refused() {
        let mut g = playing();
        assert_refused(&mut g, "not seated", |g| g.apply_move("carol", &json!(4)));
        let mut empty = TicTacToe::new();
        assert_refused(&mut empty, "not seated", |g| {
            g.apply_move("alice", &json!(4))
        });
    }

    #[test]
    fn move_before_the_second_player_is_refused() {
        let mut g = TicTacToe::new();
        g.join("alice").expect("empty table");
        assert_refused(&mut g, "waiting for a second player", |g| {
            g.apply_move("alice", &json!(4))
        });
    }

    #[test]
    fn move_out_of_turn_is_refused() {
        let mut g = playing();
        assert_refused(&mut g, "not your turn: waiting for alice", |g| {
            g.apply_move("bob", &json!(4))
        });
        g.apply_move("alice", &json!(4)).expect("alice's turn");
        assert_refused(&mut g, "not your turn: waiting for bob", |g| {
            g.apply_move("alice", &json!(0))
        });
    }

    #[test]
    fn out_of_range_cells_are_refused() {
        let mut g = playing();
        for mv in [json!(9), json!(-1), json!(i64::MIN), json!(u64::MAX)] {
            assert_refused(&mut g, "out of range", |g| g.apply_move("alice", &mv));
        }
    }

    #[test]
    fn non_integer_moves_are_refused() {
        let mut g = playing();
        let junk = [
            json!(4.0),
            json!(4.5),
            json!("4"),
            json!(null),
            json!(true),
            json!([4]),
            json!({"cell": 4}),
        ];
        for mv in junk {
            assert_refused(&mut g, "whole cell number", |g| g.apply_move("alice", &mv));
        }
    }

    #[test]
    fn taken_cell_is_refused() {
        let mut g = playing();
        g.apply_move("alice", &json!(4)).expect("alice's turn");
        assert_refused(&mut g, "cell 4 is already taken", |g| {
            g.apply_move("bob", &json!(4))
        });
    }

    #[test]
    fn move_after_a_win_is_refused() {
        let mut g = playing();
        play(&mut g, &[0, 3, 1, 4, 2]);
        assert_refused(&mut g, "round is over", |g| g.apply_move("bob", &json!(5)));
        assert_refused(&mut g, "round is over", |g| {
            g.apply_move("alice", &json!(8))
        });
    }

    #[test]
    fn every_line_wins_on_the_move_that_completes_it() {
        for line in LINES {
            let mut g = playing();
            // O's two moves stay off the line; two cells can never make an O line.
            let others: Vec<usize> = (0..9).filter(|c| !line.contains(c)).take(2).collect();
            play(&mut g, &[line[0], others[0], line[1], others[1]]);
            assert_eq!(g.state()["status"], "playing", "line {line:?} won early");
            play(&mut g, &[line[2]]);
            let s = g.state();
            assert_eq!(s["status"], "won", "line {line:?}");
            assert_eq!(s["winner"], "alice");
            assert_eq!(s["line"], json!(line));
            assert_eq!(s["forfeit"], Value::Null);
            assert_eq!(s["turn"], Value::Null);
            assert_eq!(s["moves"], 5);
        }
    }

    #[test]
    fn o_can_win() {
        let mut g = playing();
        play(&mut g, &[0, 3, 1, 4, 8, 5]);
        let s = g.state();
        assert_eq!(s["status"], "won");
        assert_eq!(s["winner"], "bob");
        assert_eq!(s["line"], json!([3, 4, 5]));
    }

    #[test]
    fn full_board_without_a_line_is_a_draw() {
        let mut g = playing();
        play(&mut g, &[0, 1, 2, 4, 3, 5, 7, 6, 8]);
        let s = g.state();
        assert_eq!(s["status"], "draw");
        assert_eq!(s["winner"], Value::Null);
        assert_eq!(s["line"], Value::Null);
        assert_eq!(s["turn"], Value::Null);
        assert_eq!(s["moves"], 9);
        assert_refused(&mut g, "round is over", |g| g.apply_move("bob", &json!(0)));
    }

    #[test]
    fn a_line_on_the_ninth_move_is_a_win_not_a_draw() {
        let mut g = playing();
        play(&mut g, &[4, 0, 2, 6, 3, 5, 1, 8, 7]);
        let s = g.state();
        assert_eq!(s["status"], "won");
        assert_eq!(s["winner"], "alice");
        assert_eq!(s["line"], json!([1, 4, 7]));
    }

    #[test]
    fn leaving_a_running_round_forfeits_it() {
        let mut g = playing();
        play(&mut g, &[4]);
        assert!(g.leave("alice"));
        let s = g.state();
        assert_eq!(s["status"], "won");
        assert_eq!(s["winner"], "bob");
        assert_eq!(s["forfeit"], "alice");
        assert_eq!(s["line"], Value::Null);
        assert_eq!(s["turn"], Value::Null);
        assert_eq!(s["players"], json!({"X": null, "O": "bob"}));
        assert_eq!(s["board"][4], "X", "the board stays visible");
    }

    #[test]
    fn leaving_before_the_start_just_frees_the_seat() {
        let mut g = TicTacToe::new();
        g.join("alice").expect("empty table");
        assert!(g.leave("alice"));
        assert_eq!(g, TicTacToe::new());
        g.join("alice").expect("empty table");
        g.join("bob").expect("one seat left");
        assert_eq!(g.state()["players"], json!({"X": "alice", "O": "bob"}));
    }

    #[test]
    fn a_freed_x_seat_is_refilled_by_the_next_joiner() {
        let mut g = TicTacToe::new();
        g.join("alice").expect("empty table");
        g.join("bob").expect("one seat left");
        play(&mut g, &[0, 3, 1, 4, 2]);
        g.restart().expect("finished");
        // Marks swapped: bob is X, alice is O. Alice leaves mid-round and forfeits her O seat,
        // and the next restart swaps again, so the free seat is X.
        assert!(g.leave("alice"));
        g.restart().expect("finished by forfeit");
        assert_eq!(g.state()["players"], json!({"X": null, "O": "bob"}));
        g.join("carol").expect("a seat is free");
        let s = g.state();
        assert_eq!(s["players"], json!({"X": "carol", "O": "bob"}));
        assert_eq!(s["status"], "playing");
    }

    #[test]
    fn leave_by_a_stranger_changes_nothing() {
        let mut g = playing();
        let before = g.clone();
        assert!(!g.leave("carol"));
        assert_eq!(g, before);
        assert!(!TicTacToe::new().leave("alice"));
    }

    #[test]
    fn leaving_after_the_finish_frees_the_seat_and_keeps_the_result() {
        let mut g = playing();
        play(&mut g, &[0, 3, 1, 4, 2]);
        assert!(g.leave("alice"));
        let s = g.state();
        assert_eq!(s["status"], "won");
        assert_eq!(s["winner"], "alice");
        assert_eq!(s["forfeit"], Value::Null);
        assert_eq!(s["players"], json!({"X": null, "O": "bob"}));
    }

    #[test]
    fn restart_is_refused_unless_the_round_is_finished() {
        let mut g = TicTacToe::new();
        assert_refused(&mut g, "no finished round", |g| g.restart());
        g.join("alice").expect("empty table");
        assert_refused(&mut g, "no finished round", |g| g.restart());
        g.join("bob").expect("one seat left");
        assert_refused(&mut g, "still being played", |g| g.restart());
        play(&mut g, &[4]);
        assert_refused(&mut g, "still being played", |g| g.restart());
    }

    #[test]
    fn restart_after_a_win_swaps_marks_and_clears_the_board() {
        let mut g = playing();
        play(&mut g, &[0, 3, 1, 4, 2]);
        g.restart().expect("finished");
        let s = g.state();
        assert_eq!(s["players"], json!({"X": "bob", "O": "alice"}));
        assert_eq!(s["status"], "playing");
        assert_eq!(s["turn"], "bob");
        assert_eq!(s["moves"], 0);
        assert_eq!(s["winner"], Value::Null);
        assert_eq!(s["line"], Value::Null);
        assert!(s["board"]
            .as_array()
            .expect("array")
            .iter()
            .all(Value::is_null));
        g.apply_move("bob", &json!(4))
            .expect("bob starts this round");
    }

    #[test]
    fn restart_after_a_draw_swaps_marks() {
        let mut g = playing();
        play(&mut g, &[0, 1, 2, 4, 3, 5, 7, 6, 8]);
        g.restart().expect("finished");
        assert_eq!(g.state()["turn"], "bob");
    }

    #[test]
    fn restart_after_a_forfeit_waits_for_a_new_player() {
        let mut g = playing();
        play(&mut g, &[4]);
        assert!(g.leave("bob"));
        g.restart().expect("finished by forfeit");
        let s = g.state();
        assert_eq!(s["status"], "waiting");
        assert_eq!(s["players"], json!({"X": null, "O": "alice"}));
        assert_eq!(s["forfeit"], Value::Null);
        assert_eq!(s["moves"], 0);
        g.join("carol").expect("X seat is free");
        let s = g.state();
        assert_eq!(s["players"], json!({"X": "carol", "O": "alice"}));
        assert_eq!(s["turn"], "carol");
    }

    const PLAYERS: [&str; 4] = ["alice", "bob", "carol", "dave"];

    #[derive(Debug, Clone)]
    enum Action {
        Join(usize),
        Leave(usize),
        /// `None` moves for whoever's turn it is, so random runs finish real rounds.
        Move(Option<usize>, Value),
        Restart,
    }

    fn move_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            8 => (0i64..9).prop_map(Value::from),
            2 => any::<i64>().prop_map(Value::from),
            1 => any::<u64>().prop_map(Value::from),
            1 => any::<f64>().prop_map(|f| {
                serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
            }),
            2 => prop::sample::select(vec![
                Value::Null,
                json!(true),
                json!("4"),
                json!(""),
                json!([4]),
                json!({"cell": 4}),
                json!(4.0),
            ]),
        ]
    }

    fn action() -> impl Strategy<Value = Action> {
        let who = 0..PLAYERS.len();
        prop_oneof![
            3 => who.clone().prop_map(Action::Join),
            1 => who.clone().prop_map(Action::Leave),
            4 => (prop::option::of(who), move_value()).prop_map(|(p, v)| Action::Move(p, v)),
            8 => (0i64..9).prop_map(|c| Action::Move(None, json!(c))),
            1 => Just(Action::Restart),
        ]
    }

    fn lines_of(board: &[Value]) -> Vec<([usize; 3], Value)> {
        LINES
            .into_iter()
            .filter(|l| !board[l[0]].is_null() && l.iter().all(|&c| board[c] == board[l[0]]))
            .map(|l| (l, board[l[0]].clone()))
            .collect()
    }

    /// Checks one visible state on its own.
    fn check_state(s: &Value) -> Result<(), TestCaseError> {
        let board = s["board"].as_array().expect("board is an array");
        prop_assert_eq!(board.len(), 9);
        prop_assert!(board.iter().all(|c| c.is_null() || c == "X" || c == "O"));
        let xs = board.iter().filter(|c| *c == "X").count();
        let os = board.iter().filter(|c| *c == "O").count();
        prop_assert!(xs == os || xs == os + 1, "X {} O {}", xs, os);
        prop_assert_eq!(s["moves"].as_u64(), Some((xs + os) as u64));

        let lines = lines_of(board);
        let marks: std::collections::BTreeSet<String> =
            lines.iter().map(|(_, m)| m.to_string()).collect();
        prop_assert!(marks.len() <= 1, "two winners: {:?}", lines);

        let (px, po) = (&s["players"]["X"], &s["players"]["O"]);
        prop_assert!(px.is_null() || px != po, "one player in both seats");
        let status = s["status"].as_str().expect("status is a string");
        let full = xs + os == 9;
        match status {
            "waiting" => {
                prop_assert!(px.is_null() || po.is_null());
                prop_assert_eq!(xs + os, 0);
            }
            "playing" => {
                prop_assert!(!px.is_null() && !po.is_null());
                prop_assert!(lines.is_empty() && !full);
                let expected = if xs == os { px } else { po };
                prop_assert_eq!(&s["turn"], expected);
            }
            "won" => {
                prop_assert!(!s["winner"].is_null());
                prop_assert!(s["line"].is_null() != s["forfeit"].is_null());
                if s["line"].is_null() {
                    prop_assert!(lines.is_empty());
                } else {
                    let line: [usize; 3] =
                        serde_json::from_value(s["line"].clone()).expect("line is three cells");
                    prop_assert!(lines.iter().any(|(l, _)| *l == line));
                    // The last mover made the line: X after an odd number of moves.
                    let last = if xs > os { "X" } else { "O" };
                    prop_assert_eq!(&board[line[0]], &json!(last));
                }
            }
            "draw" => prop_assert!(full && lines.is_empty()),
            other => prop_assert!(false, "unknown status {}", other),
        }
        if status != "playing" {
            prop_assert!(s["turn"].is_null());
        }
        if status != "won" {
            prop_assert!(s["winner"].is_null() && s["line"].is_null() && s["forfeit"].is_null());
        }
        if !lines.is_empty() {
            prop_assert_eq!(status, "won", "line {:?} not detected", lines);
        }
        Ok(())
    }

    /// Checks one step: what may change between `before` and `after` given the outcome.
    fn check_step(
        before: &Value,
        after: &Value,
        action: &Action,
        ok: bool,
    ) -> Result<(), TestCaseError> {
        let (b, a) = (
            before["board"].as_array().expect("array"),
            after["board"].as_array().expect("array"),
        );
        let finished = matches!(before["status"].as_str(), Some("won" | "draw"));
        match action {
            Action::Restart if ok => {
                prop_assert!(finished);
                prop_assert!(a.iter().all(Value::is_null));
                prop_assert_eq!(&after["players"]["X"], &before["players"]["O"]);
                prop_assert_eq!(&after["players"]["O"], &before["players"]["X"]);
            }
            Action::Move(..) if ok => {
                prop_assert!(!finished, "move accepted after the round ended");
                prop_assert_eq!(before["status"].as_str(), Some("playing"));
                let changed: Vec<usize> = (0..9).filter(|&i| a[i] != b[i]).collect();
                prop_assert_eq!(changed.len(), 1);
                let cell = changed[0];
                prop_assert!(b[cell].is_null());
                let mark = if before["moves"].as_u64().expect("moves").is_multiple_of(2) {
                    "X"
                } else {
                    "O"
                };
                prop_assert_eq!(&a[cell], &json!(mark));
                let won_now = !lines_of(a).is_empty();
                prop_assert_eq!(won_now, after["status"] == "won");
                if won_now {
                    prop_assert!(after["forfeit"].is_null());
                    prop_assert_eq!(&after["winner"], &before["turn"]);
                }
            }
            _ => prop_assert_eq!(a, b, "board changed without a move or restart"),
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn random_actions_never_corrupt_the_state(
            actions in prop::collection::vec(action(), 0..80)
        ) {
            let mut g = TicTacToe::new();
            for action in &actions {
                let before = g.clone();
                let state_before = g.state();
                let outcome = match action {
                    Action::Join(p) => g.join(PLAYERS[*p]),
                    Action::Leave(p) => {
                        let changed = g.leave(PLAYERS[*p]);
                        prop_assert_eq!(changed, g.state() != state_before, "leave's return value");
                        Ok(())
                    }
                    Action::Move(p, mv) => {
                        let who = match p {
                            Some(p) => PLAYERS[*p],
                            None => state_before["turn"].as_str().unwrap_or(PLAYERS[0]),
                        };
                        g.apply_move(who, mv)
                    }
                    Action::Restart => g.restart(),
                };
                if let Err(e) = &outcome {
                    prop_assert!(!e.0.is_empty());
                    prop_assert_eq!(&g, &before, "refusal {:?} changed the state", e);
                }
                let state = g.state();
                check_state(&state)?;
                check_step(&state_before, &state, action, outcome.is_ok())?;
            }
        }
    }
}
