//go:build !linux

package journalstore

import "os"

func datasync(f *os.File) error { return f.Sync() }
