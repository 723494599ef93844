//! Server-authoritative games: the rules a room enforces, kept pure so they can be trusted.
//!
//! Clients in a game room cannot be believed about the board: a headset can send any move at any
//! time, two players can click in the same frame, and a player can vanish mid-round. So the server
//! owns the whole game state and the clients only propose moves. Every game here is a plain value
//! with no IO, no clock and no randomness: the hub feeds it `join` / `leave` / `apply_move` /
//! `restart`, broadcasts [`Game::state`] after each change, and sends a refusal back as error 422.
//! That makes every rule testable in microseconds, and replaying the same inputs always gives the
//! same state.
//!
//! # Adding a game
//!
//! Write one new file in this folder with a type implementing [`Game`], declare it with
//! `pub mod` below, and add one line to [`REGISTRY`]. [`names`] and [`new_game`] pick it up;
//! the registry tests check the name the game reports matches its registry line.

pub mod tictactoe;

use std::sync::OnceLock;

/// A move or command the game refused; the message is shown to the player as-is (sent as error 422).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GameError(pub String);

/// One game's rules and state, driven by the hub for one room.
///
/// Every method is deterministic and either applies a change completely or refuses it with no
/// effect, so the room never broadcasts a half-applied state.
pub trait Game: Send + std::fmt::Debug {
    /// Registry name, e.g. "tictactoe".
    fn name(&self) -> &'static str;
    /// `player` asks for a seat. Err if seats are full, already seated, or game over.
    fn join(&mut self, player: &str) -> Result<(), GameError>;
    /// `player` left the room or disconnected. A seated player forfeits a running game
    /// (the other seated player wins); if the game had not started (seats not full) the seat is just freed.
    /// Returns true when the visible state changed (so the room must be told).
    fn leave(&mut self, player: &str) -> bool;
    /// Apply a move as sent by the client in `data.move` (raw JSON value). Err leaves state untouched.
    fn apply_move(&mut self, player: &str, mv: &serde_json::Value) -> Result<(), GameError>;
    /// Start a new round with the same seated players (only when the current one is finished; else Err).
    /// If a seat is empty after a forfeit, the new round waits for a player to join.
    fn restart(&mut self) -> Result<(), GameError>;
    /// Whole visible state as JSON, sent to every room member after each change.
    fn state(&self) -> serde_json::Value;
    /// A round is being played: another game may not be started over it.
    fn is_running(&self) -> bool;
    /// The player whose move it is, while a round is running; the room times their turn.
    fn turn(&self) -> Option<&str>;
    /// `player`, whose turn it is, ran out of time: they forfeit the round and keep their
    /// seat. Returns true when the state changed (false if it was not their turn).
    fn time_out(&mut self, player: &str) -> bool;
    /// The seated players (a cluster node taking the game over checks they are still in the
    /// room).
    fn players(&self) -> Vec<&str>;
}

/// One registry line: the name clients ask for, how to build a fresh game, and how to build
/// one back from its [`Game::state`] (a cluster node taking a game over from another).
struct Entry {
    name: &'static str,
    make: fn() -> Box<dyn Game>,
    restore: fn(&serde_json::Value) -> Option<Box<dyn Game>>,
}

/// Every game the server can host; adding a game means adding one line here.
const REGISTRY: &[Entry] = &[Entry {
    name: "tictactoe",
    make: || Box::new(tictactoe::TicTacToe::new()),
    restore: |state| {
        tictactoe::TicTacToe::from_state(state).map(|game| Box::new(game) as Box<dyn Game>)
    },
}];

/// Names of all registered games, sorted.
pub fn names() -> &'static [&'static str] {
    // Built once so the registry stays the single list to edit and callers still get a
    // borrowed slice they can put in replies without allocating.
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names: Vec<&'static str> = REGISTRY.iter().map(|e| e.name).collect();
        names.sort_unstable();
        names
    })
}

/// A fresh game by registry name; None for an unknown name.
pub fn new_game(name: &str) -> Option<Box<dyn Game>> {
    REGISTRY.iter().find(|e| e.name == name).map(|e| (e.make)())
}

/// The game a [`Game::state`] describes (its `"game"` names the registry line); None when it
/// names no game or is not a state that game can be in.
pub fn restore_game(state: &serde_json::Value) -> Option<Box<dyn Game>> {
    let name = state.get("game")?.as_str()?;
    let entry = REGISTRY.iter().find(|e| e.name == name)?;
    (entry.restore)(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sorted_and_unique() {
        let names = names();
        assert!(!names.is_empty());
        assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
        assert!(names.contains(&"tictactoe"));
    }

    #[test]
    fn every_registered_game_reports_its_registry_name() {
        for &name in names() {
            let game = new_game(name).expect("registered name must build");
            assert_eq!(game.name(), name);
            assert_eq!(game.state()["game"], name);
            assert!(!game.is_running(), "a fresh game waits for players");
        }
    }

    #[test]
    fn unknown_names_are_refused() {
        assert!(new_game("chess").is_none());
        assert!(new_game("").is_none());
        assert!(new_game("TicTacToe").is_none());
    }

    #[test]
    fn new_game_builds_independent_instances() {
        let mut a = new_game("tictactoe").expect("registered");
        let b = new_game("tictactoe").expect("registered");
        a.join("alice").expect("empty seat");
        assert_ne!(a.state(), b.state());
    }

    #[test]
    fn game_error_displays_its_message_verbatim() {
        assert_eq!(
            GameError("cell 4 is already taken".into()).to_string(),
            "cell 4 is already taken"
        );
    }
}
