//! Interest management: which members' poses each member receives at a tick.
//!
//! With `--interest-radius R`, a member receives the poses of the members whose head is within
//! R metres of its own head (3D distance); with `--interest-nearest K`, those of its K nearest
//! members; with both, its K nearest within R. A member always receives its own pose. A member
//! without a head pose is nowhere: it receives no one's pose, and no one receives its pose.
//! Ties at equal distance go to the user name that sorts first (plain string order), so the
//! choice is the same on every tick and any client can reproduce it.
//!
//! The selection runs once per receiver per tick, so it must not cost `n` per receiver in a
//! room of hundreds: members are put in a uniform grid over the horizontal plane (x, z), and a
//! receiver looks only at the cells around its own. For a radius the cell is R wide and the
//! 3 x 3 cells around the receiver hold every candidate. For K nearest the cell is sized so a
//! cell holds about K/2 members, and the search widens ring by ring until the K-th nearest
//! found is closer than anything the next ring could hold. Below [`BRUTE_FORCE_MAX`] members,
//! a plain scan is cheaper than building the grid and is used instead; both give the same
//! answer (a test checks it).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::config::Config;
use crate::protocol::Vec3;

/// Rooms with at most this many posed members are scanned, not gridded: building the grid
/// costs more than the scan it saves (see the `hub/tick_interest` micro benches).
pub(crate) const BRUTE_FORCE_MAX: usize = 48;

/// What a member is interested in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rule {
    /// Metres around the receiver's head.
    pub radius: Option<f64>,
    /// Members, nearest first.
    pub nearest: Option<usize>,
}

impl Rule {
    /// The configured rule; `None` when interest management is off.
    pub fn of(config: &Config) -> Option<Rule> {
        let rule = Rule {
            radius: config.interest_radius,
            nearest: config.interest_nearest,
        };
        (rule.radius.is_some() || rule.nearest.is_some()).then_some(rule)
    }
}

/// A candidate: squared distance, tie rank, member index.
type Candidate = (f64, u32, u32);

/// Picks each receiver's members for one tick. Its buffers live as long as the room, so a
/// tick allocates nothing once they have grown.
#[derive(Debug)]
pub(crate) struct Selector {
    rule: Rule,
    brute_force_max: usize,
    /// Head position per member index this tick.
    points: Vec<Option<[f64; 3]>>,
    /// Tie order per member index: its rank in plain name order.
    ranks: Vec<u32>,
    /// Members with a position.
    posed: Vec<u32>,
    grid: Option<Grid>,
    candidates: Vec<Candidate>,
}

/// Posed members bucketed by cell, for one tick.
#[derive(Debug, Default)]
struct Grid {
    cell: f64,
    min_x: f64,
    min_z: f64,
    /// Cells spanned along x and z, minus one: how far a ring search may go.
    span: u32,
    /// (cell key, member index), sorted by key.
    members: Vec<(u64, u32)>,
    /// Cell key to the range of `members` in it.
    cells: HashMap<u64, (u32, u32), BuildHasherDefault<CellHasher>>,
}

/// Cell keys are two packed coordinates, not attacker-chosen strings: one multiply mixes them
/// well enough, at a fraction of SipHash's cost per lookup (a receiver looks up 9 or more).
#[derive(Default)]
struct CellHasher(u64);

impl Hasher for CellHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = (key ^ (key >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

impl Selector {
    pub fn new(rule: Rule) -> Selector {
        Selector {
            rule,
            brute_force_max: BRUTE_FORCE_MAX,
            points: Vec::new(),
            ranks: Vec::new(),
            posed: Vec::new(),
            grid: None,
            candidates: Vec::new(),
        }
    }

    /// Takes this tick's head positions, by member index (`None`: no head pose). `names`, by
    /// member index too, must be given when the members changed since the last call (the
    /// first time included): ties are broken by name.
    pub fn prepare(&mut self, positions: &[Option<Vec3>], names: Option<&[&str]>) {
        if let Some(names) = names {
            let mut order: Vec<u32> = (0..names.len() as u32).collect();
            order.sort_unstable_by(|&a, &b| names[a as usize].cmp(names[b as usize]));
            self.ranks.clear();
            self.ranks.resize(names.len(), 0);
            for (rank, &member) in order.iter().enumerate() {
                self.ranks[member as usize] = rank as u32;
            }
        }
        self.points.clear();
        self.points
            .extend(positions.iter().map(|p| p.map(|p| [p.x, p.y, p.z])));
        self.posed.clear();
        self.posed.extend(
            self.points
                .iter()
                .enumerate()
                .filter(|(_, p)| p.is_some())
                .map(|(i, _)| i as u32),
        );
        let grid = match self.posed.len() > self.brute_force_max {
            true => self.grid.take().unwrap_or_default().build(self),
            false => None,
        };
        self.grid = grid;
    }

    /// The members `receiver` sees this tick, itself included, as member indices in no
    /// particular order; empty when it has no head pose.
    pub fn visible(&mut self, receiver: usize, out: &mut Vec<u32>) {
        out.clear();
        let Some(Some(from)) = self.points.get(receiver).copied() else {
            return;
        };
        self.candidates.clear();
        let radius2 = self.rule.radius.map(|r| r * r);
        match &self.grid {
            None => {
                for k in 0..self.posed.len() {
                    let other = self.posed[k];
                    self.consider(receiver, other, from, radius2);
                }
            }
            Some(grid) => {
                let (cx, cz) = grid.cell_of(from);
                let rings = match self.rule.radius {
                    Some(radius) => ((radius / grid.cell).ceil() as u32).min(grid.span),
                    None => grid.span,
                };
                let mut found = std::mem::take(&mut self.candidates);
                let mut partitioned = false;
                let mut visited = 0;
                let others = self.posed.len() - 1;
                for ring in 0..=rings {
                    grid.ring(cx, cz, ring, |other| {
                        if other as usize == receiver {
                            return;
                        }
                        visited += 1;
                        let Some(to) = self.points[other as usize] else {
                            return;
                        };
                        let d2 = distance2(from, to);
                        if radius2.is_none_or(|r2| d2 <= r2) {
                            found.push((d2, self.ranks[other as usize], other));
                        }
                    });
                    if visited == others {
                        break;
                    }
                    // Anything in a farther ring is more than `ring` cells away horizontally.
                    let beyond = ring as f64 * grid.cell;
                    if let Some(k) = self.rule.nearest {
                        if found.len() >= k && kth(&mut found, k) < beyond * beyond {
                            // The K nearest are now the first K.
                            partitioned = true;
                            break;
                        }
                    }
                }
                self.candidates = found;
                if partitioned {
                    self.candidates
                        .truncate(self.rule.nearest.unwrap_or(usize::MAX));
                }
            }
        }
        if let Some(k) = self.rule.nearest {
            if self.candidates.len() > k {
                self.candidates.select_nth_unstable_by(k - 1, closer);
                self.candidates.truncate(k);
            }
        }
        out.extend(self.candidates.iter().map(|&(_, _, index)| index));
        out.push(receiver as u32);
    }

    fn consider(&mut self, receiver: usize, other: u32, from: [f64; 3], radius2: Option<f64>) {
        if other as usize == receiver {
            return;
        }
        let Some(to) = self.points[other as usize] else {
            return;
        };
        let d2 = distance2(from, to);
        if radius2.is_none_or(|r2| d2 <= r2) {
            self.candidates
                .push((d2, self.ranks[other as usize], other));
        }
    }
}

impl Grid {
    /// Buckets the selector's posed members; `None` when the positions are too far apart for
    /// cells (a plain scan is used then).
    fn build(mut self, selector: &Selector) -> Option<Grid> {
        let posed = &selector.posed;
        let point = |i: u32| selector.points[i as usize];
        let (mut min_x, mut max_x, mut min_z, mut max_z) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for p in posed.iter().filter_map(|&i| point(i)) {
            min_x = min_x.min(p[0]);
            max_x = max_x.max(p[0]);
            min_z = min_z.min(p[2]);
            max_z = max_z.max(p[2]);
        }
        let (width, depth) = (max_x - min_x, max_z - min_z);
        let cell = match selector.rule {
            Rule {
                radius: Some(radius),
                ..
            } => radius,
            Rule {
                nearest: Some(k), ..
            } => {
                // About K/2 members per cell, were they spread evenly.
                let cells = (2.0 * posed.len() as f64 / k.max(1) as f64).max(1.0);
                let area = width * depth;
                match area > 0.0 {
                    true => (area / cells).sqrt(),
                    false => width.max(depth) / cells,
                }
            }
            Rule { .. } => return None,
        };
        // Far more cells than members (outliers stretch the box) would make the ring search
        // cost more than the scan it replaces: at most about 2 sqrt(n) cells a side, so even a
        // search through every ring visits O(n) cells.
        let widest = width.max(depth);
        let fewest = widest / (2.0 * (posed.len() as f64).sqrt() + 1.0);
        let cell = match cell > 0.0 && cell.is_finite() {
            true => cell.max(fewest),
            false => fewest,
        };
        if !(cell > 0.0 && cell.is_finite()) {
            return None; // every member at one point, or positions beyond what cells can span
        }
        self.cell = cell;
        self.min_x = min_x;
        self.min_z = min_z;
        self.span = (widest / cell).ceil().min(u32::MAX as f64) as u32;
        self.members.clear();
        for &i in posed {
            if let Some(p) = point(i) {
                let (cx, cz) = self.cell_of(p);
                self.members.push((key(cx, cz), i));
            }
        }
        self.members.sort_unstable_by_key(|&(key, _)| key);
        self.cells.clear();
        let mut start = 0;
        while start < self.members.len() {
            let cell_key = self.members[start].0;
            let mut end = start + 1;
            while end < self.members.len() && self.members[end].0 == cell_key {
                end += 1;
            }
            self.cells.insert(cell_key, (start as u32, end as u32));
            start = end;
        }
        Some(self)
    }

    fn cell_of(&self, p: [f64; 3]) -> (u32, u32) {
        // `as` saturates: a position far outside the grid lands in an edge cell, where the
        // exact distance still decides.
        let cx = ((p[0] - self.min_x) / self.cell).floor() as u32;
        let cz = ((p[2] - self.min_z) / self.cell).floor() as u32;
        (cx, cz)
    }

    /// Calls `visit` with every member in the cells exactly `ring` cells from (cx, cz).
    fn ring(&self, cx: u32, cz: u32, ring: u32, mut visit: impl FnMut(u32)) {
        let mut cell = |x: i64, z: i64| {
            if x < 0 || z < 0 || x > u32::MAX as i64 || z > u32::MAX as i64 {
                return;
            }
            if let Some(&(start, end)) = self.cells.get(&key(x as u32, z as u32)) {
                for &(_, member) in &self.members[start as usize..end as usize] {
                    visit(member);
                }
            }
        };
        let (cx, cz, r) = (i64::from(cx), i64::from(cz), i64::from(ring));
        if r == 0 {
            return cell(cx, cz);
        }
        for x in cx - r..=cx + r {
            cell(x, cz - r);
            cell(x, cz + r);
        }
        for z in cz - r + 1..cz + r {
            cell(cx - r, z);
            cell(cx + r, z);
        }
    }
}

fn key(cx: u32, cz: u32) -> u64 {
    (u64::from(cx) << 32) | u64::from(cz)
}

fn distance2(a: [f64; 3], b: [f64; 3]) -> f64 {
    let (dx, dy, dz) = (a[0] - b[0], a[1] - b[1], a[2] - b[2]);
    dx * dx + dy * dy + dz * dz
}

/// Nearer first; at equal distance, the name that sorts first.
fn closer(a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
    a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
}

/// The squared distance of the k-th nearest candidate (`found` holds at least k).
fn kth(found: &mut [Candidate], k: usize) -> f64 {
    found.select_nth_unstable_by(k - 1, closer).1 .0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(x: f64, z: f64) -> Option<Vec3> {
        Some(Vec3 { x, y: 1.6, z })
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("u{i:04}")).collect()
    }

    fn select(rule: Rule, positions: &[Option<Vec3>], brute_force_max: usize) -> Vec<Vec<u32>> {
        let names = names(positions.len());
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut selector = Selector::new(rule);
        selector.brute_force_max = brute_force_max;
        selector.prepare(positions, Some(&names));
        let mut out = Vec::new();
        (0..positions.len())
            .map(|i| {
                selector.visible(i, &mut out);
                out.sort_unstable();
                out.clone()
            })
            .collect()
    }

    const NEAREST_2: Rule = Rule {
        radius: None,
        nearest: Some(2),
    };

    #[test]
    fn a_radius_keeps_members_within_it_and_the_receiver() {
        let rule = Rule {
            radius: Some(2.0),
            nearest: None,
        };
        let positions = [
            at(0.0, 0.0),
            at(1.5, 0.0),
            at(0.0, 2.5),
            None,
            at(-2.0, 0.0),
        ];
        let seen = select(rule, &positions, usize::MAX);
        assert_eq!(seen[0], [0, 1, 4], "2.5 m is out, exactly 2 m is in");
        assert_eq!(seen[1], [0, 1]);
        assert_eq!(seen[2], [2]);
        assert!(seen[3].is_empty(), "no head pose: nowhere, sees no one");
    }

    #[test]
    fn k_nearest_breaks_ties_by_name() {
        // Members 1, 2 and 3 are all 1 m from member 0; names sort u0001 < u0002 < u0003.
        let positions = [
            at(0.0, 0.0),
            at(1.0, 0.0),
            at(0.0, 1.0),
            at(-1.0, 0.0),
            at(5.0, 5.0),
        ];
        let seen = select(NEAREST_2, &positions, usize::MAX);
        assert_eq!(seen[0], [0, 1, 2]);
        assert_eq!(seen[4], [1, 2, 4], "1 and 2 are the nearest to the far one");
    }

    #[test]
    fn the_grid_picks_what_a_scan_picks() {
        // A deterministic scatter (a linear congruential generator), with clusters, duplicates
        // and a far outlier, for each rule; the grid must agree with the plain scan exactly.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        for round in 0..12 {
            let n = 60 + round * 40;
            let mut positions: Vec<Option<Vec3>> = (0..n)
                .map(|i| match i % 10 {
                    0 => None,
                    1 => at(3.0, 3.0), // a crowd on one spot: ties everywhere
                    _ => at(next() * 40.0 - 20.0, next() * 30.0),
                })
                .collect();
            positions.push(at(5_000.0, -7_000.0));
            for rule in [
                Rule {
                    radius: Some(4.0),
                    nearest: None,
                },
                Rule {
                    radius: None,
                    nearest: Some(20),
                },
                Rule {
                    radius: Some(6.0),
                    nearest: Some(8),
                },
                NEAREST_2,
            ] {
                let grid = select(rule, &positions, 0);
                let scan = select(rule, &positions, usize::MAX);
                assert_eq!(grid, scan, "{rule:?}, {n} members");
            }
        }
    }

    #[test]
    fn degenerate_layouts_still_select() {
        let same = vec![at(1.0, 1.0); 100];
        let seen = select(NEAREST_2, &same, 0);
        assert_eq!(
            seen[50],
            [0, 1, 50],
            "all at one point: the first names win"
        );
        let line: Vec<_> = (0..100).map(|i| at(i as f64, 0.0)).collect();
        assert_eq!(select(NEAREST_2, &line, 0)[50], [49, 50, 51]);
        let huge = vec![at(1e300, -1e300), at(-1e300, 1e300), at(0.0, 0.0)];
        let seen = select(NEAREST_2, &huge, 0);
        assert_eq!(seen[2], [0, 1, 2]);
    }
}
