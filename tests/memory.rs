//! Memory per unfinished task: the heap the scheduler's state grows by for each queued task
//! with short strings, counted by a global allocator that tracks live bytes.
//!
//! The counting allocator is this binary's alone, and the binary holds one test, so nothing
//! else allocates while it measures. Bytes are what the code asks the allocator for, which
//! is deterministic; the allocator's own overhead per block is reported beside them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use mission_control::domain::{Id, Millis};
use mission_control::scheduler::{NewTask, NewVenture, SchedulerConfig, SchedulerState, Snapshot};

/// The most an unfinished task may cost the scheduler's memory (issue 14).
const MAX_BYTES_PER_TASK: f64 = 600.0;

/// Enough tasks that the maps' and trees' fixed parts and their growth steps average out.
const N_TASKS: usize = 100_000;

const N_VENTURES: usize = 4;

#[test]
fn an_unfinished_task_costs_at_most_600_bytes() {
    let config = SchedulerConfig { default_lease_seconds: 300, agent_timeout_seconds: 600 };
    let mut state = SchedulerState::new(config, Snapshot::default(), Millis(1_700_000_000_000));
    let venture_ids: Vec<Id> = (0..N_VENTURES)
        .map(|v| {
            let new = NewVenture { name: format!("Venture {v}").into(), ..NewVenture::default() };
            state.create_venture(new).expect("venture").venture.id.clone()
        })
        .collect();
    drop(state.take_changes());
    let before = Counted::now();
    for i in 0..N_TASKS {
        // Built here, so the title the state keeps counts as the task's.
        let new = NewTask {
            title: format!("task {i}").into(),
            venture_id: venture_ids[i % N_VENTURES].clone(),
            ..NewTask::default()
        };
        state.create_task(new, None).expect("create");
        // The actor hands each message's changes to the persister; they do not stay.
        drop(state.take_changes());
        if i % 1_000 == 0 {
            state.advance(Millis(state.now().0 + 1));
        }
    }
    let after = Counted::now();
    let bytes = (after.bytes - before.bytes) as f64 / N_TASKS as f64;
    let blocks = (after.blocks - before.blocks) as f64 / N_TASKS as f64;
    let held = (after.usable - before.usable) as f64 / N_TASKS as f64 + 8.0 * blocks;
    println!(
        "{N_TASKS} queued tasks, per task: {bytes:.1} bytes asked for in {blocks:.2} heap blocks; \
         {held:.1} bytes held by the allocator (usable sizes plus an 8-byte header a block)"
    );
    assert!(bytes <= MAX_BYTES_PER_TASK, "{bytes:.1} bytes per unfinished task, over {MAX_BYTES_PER_TASK}");
    drop(state);
}

/// Live heap bytes and blocks.
struct Counted {
    bytes: isize,
    blocks: isize,
    usable: isize,
}

impl Counted {
    fn now() -> Counted {
        Counted {
            bytes: LIVE_BYTES.load(Ordering::SeqCst),
            blocks: LIVE_BLOCKS.load(Ordering::SeqCst),
            usable: LIVE_USABLE.load(Ordering::SeqCst),
        }
    }
}

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static LIVE_BLOCKS: AtomicIsize = AtomicIsize::new(0);
/// What the allocator holds for the live blocks: their usable sizes, rounded up from what
/// was asked for (glibc adds an 8-byte header per block besides).
static LIVE_USABLE: AtomicIsize = AtomicIsize::new(0);

fn usable(block: *mut u8) -> isize {
    // SAFETY: `block` is live and came from the system allocator.
    (unsafe { libc::malloc_usable_size(block.cast()) }) as isize
}

/// Counts a block the system allocator handed out (none when it failed).
fn counted(block: *mut u8, layout: Layout) -> *mut u8 {
    if !block.is_null() {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        LIVE_BLOCKS.fetch_add(1, Ordering::Relaxed);
        LIVE_USABLE.fetch_add(usable(block), Ordering::Relaxed);
    }
    block
}

/// The system allocator, counting what is live.
struct Counting;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        counted(unsafe { System.alloc(layout) }, layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        counted(unsafe { System.alloc_zeroed(layout) }, layout)
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        LIVE_USABLE.fetch_sub(usable(block), Ordering::Relaxed);
        unsafe { System.dealloc(block, layout) };
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        LIVE_BLOCKS.fetch_sub(1, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let was = usable(block);
        let moved = unsafe { System.realloc(block, layout, new_size) };
        if !moved.is_null() {
            LIVE_BYTES.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
            LIVE_USABLE.fetch_add(usable(moved) - was, Ordering::Relaxed);
        }
        moved
    }
}
