//! The ceiling one stack per connection sets: each task stack is two memory mappings (a guard page
//! and the stack), and the kernel refuses mappings past `vm.max_map_count`. When that happens a new
//! connection finds no stack and is closed; this check says so at start, with the numbers, instead.

use super::reactor::SPARE_STACKS;

/// Mappings each task stack takes: the guard page and the stack itself.
pub const MAPPINGS_PER_STACK: usize = 2;
/// Mappings the process has besides stacks (the binary, libraries, heap arenas, thread stacks), with
/// room to spare: a running proxy with a handful of workers maps a few hundred.
pub const OTHER_MAPPINGS: usize = 2048;
const MAX_MAP_COUNT: &str = "/proc/sys/vm/max_map_count";

/// How many mappings the stacks of `max_connections` connections and `workers` workers' spare
/// stacks need, with the rest of the process.
pub fn mappings_needed(max_connections: usize, workers: usize) -> usize {
    max_connections
        .saturating_add(workers.saturating_mul(SPARE_STACKS))
        .saturating_mul(MAPPINGS_PER_STACK)
        .saturating_add(OTHER_MAPPINGS)
}

/// A warning for the operator when `vm.max_map_count` is below what `max_connections` needs, or
/// `None` (also when the limit cannot be read: not Linux, no /proc).
pub fn check_map_count(max_connections: usize, workers: usize) -> Option<String> {
    let limit: usize = std::fs::read_to_string(MAX_MAP_COUNT)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    map_count_warning(limit, max_connections, workers)
}

fn map_count_warning(limit: usize, max_connections: usize, workers: usize) -> Option<String> {
    let needed = mappings_needed(max_connections, workers);
    if needed <= limit {
        return None;
    }
    let fits = (limit.saturating_sub(OTHER_MAPPINGS) / MAPPINGS_PER_STACK)
        .saturating_sub(workers.saturating_mul(SPARE_STACKS));
    Some(format!(
        "--max-connections {max_connections} needs about {needed} memory mappings ({MAPPINGS_PER_STACK} per connection's stack, spare stacks for {workers} workers, {OTHER_MAPPINGS} for the rest) but vm.max_map_count is {limit}: past about {fits} connections new ones are closed for want of a stack; raise it (sysctl vm.max_map_count={needed}) or lower --max-connections"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_limit_fits_the_default_connections_and_not_a_hundred_thousand() {
        assert_eq!(map_count_warning(65530, 4096, 2), None);
        let warning = map_count_warning(65530, 100_000, 2).expect("too many for the limit");
        assert!(warning.contains("vm.max_map_count is 65530"), "{warning}");
        assert!(
            warning.contains("past about 31613 connections"),
            "{warning}"
        );
    }
}
