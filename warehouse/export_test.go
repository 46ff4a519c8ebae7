package warehouse

// SetStageEnrichmentsEvery lets tests stage made results with every batch.
func SetStageEnrichmentsEvery(n int) (restore func()) {
	old := stageEnrichmentsEvery
	stageEnrichmentsEvery = n
	return func() { stageEnrichmentsEvery = old }
}

// SetFault makes the store's loads call fault before each statement; an
// error it returns is the statement's.
func SetFault(s *Store, fault func(stmt string) error) { s.fault = fault }
