//! The engine: probing, backend choice, bounded queues, limits and
//! deadlines, through `Engine::run` as the RPC service calls it.

use std::time::Duration;

use wimpy_compute::{BackendKind, ComputeError, Engine, EngineConfig, Image, Limits};
use wimpy_schema::job::{Encoding, Job};

fn png(w: u32, h: u32) -> Vec<u8> {
    let px: Vec<u8> = (0..w * h * 4).map(|i| (i * 7 % 251) as u8).collect();
    Image::new(w, h, px).encode(Encoding::Png).unwrap()
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

#[test]
fn every_backend_is_probed_and_auto_skips_software_gpus() {
    let engine = Engine::start(&EngineConfig::default());
    let kinds: Vec<BackendKind> = engine.backends().iter().map(|b| b.kind).collect();
    // CI has Mesa's Vulkan and GLES stacks: all four come up, in preference order.
    assert_eq!(kinds, BackendKind::PREFERENCE.to_vec(), "failures: {:?}", engine.failures());
    let job = Job::parse(&["invert"]).unwrap();
    let out = block_on(engine.run(job.clone(), png(9, 7), None, None)).unwrap();
    let first_hardware = engine.backends().into_iter().find(|b| !b.software).unwrap();
    assert_eq!(out.backend, first_hardware);
    // Every backend gives the same bytes.
    for kind in kinds {
        let on = block_on(engine.run(job.clone(), png(9, 7), Some(kind), None)).unwrap();
        assert_eq!(on.backend.kind, kind);
        assert_eq!(on.bytes, out.bytes, "{kind}");
    }
}

#[test]
fn refusals_are_typed_and_state_the_limit() {
    let limits = Limits { max_pixels: 1000, max_value_bytes: 65_536, deadline: Duration::from_secs(5) };
    let engine = Engine::start(&EngineConfig { backends: vec![BackendKind::Simd], limits, ..EngineConfig::default() });
    let invert = Job::parse(&["invert"]).unwrap();
    let run = |job: &Job, value: Vec<u8>, on: Option<BackendKind>| block_on(engine.run(job.clone(), value, on, None));

    assert!(matches!(
        run(&invert, png(40, 40), None),
        Err(ComputeError::TooManyPixels { pixels: 1600, limit: 1000, .. })
    ));
    assert!(matches!(
        run(&Job::parse(&["resize:100:100"]).unwrap(), png(10, 10), None),
        Err(ComputeError::TooManyPixels { pixels: 10_000, limit: 1000, .. })
    ));
    // A resize whose output fits but whose image between passes would not.
    assert!(matches!(
        run(&Job::parse(&["resize:20:50"]).unwrap(), png(40, 20), None),
        Err(ComputeError::TooManyPixels { width: 40, height: 50, limit: 1000, .. })
    ));
    assert!(matches!(
        run(&invert, vec![0; 70_000], None),
        Err(ComputeError::ValueTooLarge { actual: 70_000, limit: 65_536 })
    ));
    assert!(matches!(run(&invert, b"GIF89a....".to_vec(), None), Err(ComputeError::BadImage(_))));
    assert!(matches!(run(&invert, png(10, 10)[..40].to_vec(), None), Err(ComputeError::BadImage(_))));
    assert!(matches!(
        run(&invert, png(10, 10), Some(BackendKind::Wgpu)),
        Err(ComputeError::BackendUnavailable(BackendKind::Wgpu))
    ));
    // A header claiming 0 x N pixels (CRC fixed so only the size is wrong).
    let mut empty = png(3, 3);
    empty[16..20].copy_from_slice(&0u32.to_be_bytes());
    let crc = crc32fast::hash(&empty[12..29]);
    empty[29..33].copy_from_slice(&crc.to_be_bytes());
    let e = run(&invert, empty, None).unwrap_err();
    assert!(matches!(e, ComputeError::EmptyImage { .. } | ComputeError::BadImage(_)), "{e:?}");
    // 1 x 1 works; the engine keeps serving after every refusal.
    let one = run(&Job::parse(&["blur:3", "sobel", "resize:3:2"]).unwrap(), png(1, 1), None).unwrap();
    assert_eq!(one.size, Some((3, 2)));
}

#[test]
fn a_job_past_its_deadline_stops_between_passes() {
    let engine = Engine::start(&EngineConfig { backends: vec![BackendKind::Cpu], ..EngineConfig::default() });
    let job = Job::parse(&["blake3:10000000"]).unwrap();
    let started = std::time::Instant::now();
    let e = block_on(engine.run(job, vec![1; 64], None, Some(Duration::from_millis(50)))).unwrap_err();
    assert!(matches!(e, ComputeError::DeadlineExceeded { limit_ms: 50, .. }), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "the deadline did not stop the job");
}

#[test]
fn a_full_queue_answers_overloaded_at_once() {
    let engine = Engine::start(&EngineConfig {
        backends: vec![BackendKind::Cpu],
        cpu_threads: 1,
        queue_depth: 1,
        ..EngineConfig::default()
    });
    block_on(async {
        // One job runs, one waits, the third finds the queue full.
        let slow = || engine.run(Job::parse(&["sha256:2000000"]).unwrap(), vec![0; 32], None, None);
        let (a, b) = (slow(), slow());
        futures::pin_mut!(a, b);
        // Poll each once so it is sent: the first, then (once the lane's
        // thread has taken it) the second, which waits in the queue.
        let _ = futures::poll!(&mut a);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = futures::poll!(&mut b);
        let third = engine.run(Job::parse(&["sha256"]).unwrap(), vec![0; 32], None, None).await;
        assert!(
            matches!(third, Err(ComputeError::Overloaded { backend: BackendKind::Cpu, limit: 1, .. })),
            "{third:?}"
        );
        assert!(a.await.is_ok() && b.await.is_ok());
    });
}
