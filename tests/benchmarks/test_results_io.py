"""benchmarks/results_io.py: how shards split a study's jobs."""
from benchmarks import results_io


def test_shards_started_at_different_times_cover_every_job():
  jobs = list(range(11))
  finished = set()
  # Shard 0 starts on a fresh study and finishes three of its jobs...
  first = results_io.shard_jobs(jobs, 0, 2, finished.__contains__)
  finished.update(first[:3])
  # ...then shard 1 starts: it must take every job shard 0 will not run.
  second = results_io.shard_jobs(jobs, 1, 2, finished.__contains__)
  assert sorted(set(first) | set(second)) == jobs
  assert not set(first) & set(second)
  # A shard started again later runs only what is still missing of its share.
  finished.update(second)
  assert results_io.shard_jobs(jobs, 1, 2, finished.__contains__) == []
  assert results_io.shard_jobs(jobs, 0, 2, finished.__contains__) == first[3:]
  assert results_io.shard_jobs(jobs, 0, 1, finished.__contains__) == first[3:]
