package warehouse

// SetStageEnrichmentsEvery lets tests stage made results with every batch.
func SetStageEnrichmentsEvery(n int) (restore func()) {
	old := stageEnrichmentsEvery
	stageEnrichmentsEvery = n
	return func() { stageEnrichmentsEvery = old }
}
