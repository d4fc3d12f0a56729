package replicaset

// SlowStartBatch performs count writes in batches of growing size, as Kubernetes' slowStartBatch:
// first initial, then doubling (1, 2, 4, 8, ...), so that a systematic failure (a quota, a template
// the store refuses) costs one write instead of count. fn performs n writes and returns how many
// succeeded; the first batch with an error ends the run. It returns the number of successful
// writes and that error.
func SlowStartBatch(count, initial int, fn func(n int) (int, error)) (int, error) {
	remaining := count
	successes := 0
	for batch := min(remaining, initial); batch > 0; batch = min(2*batch, remaining) {
		ok, err := fn(batch)
		successes += ok
		if err != nil {
			return successes, err
		}
		remaining -= batch
	}
	return successes, nil
}
