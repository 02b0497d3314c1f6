package actions

import (
	"strconv"
	"strings"
)

// byteSize renders a size as Diego's download and upload messages do
// ("Downloaded droplet (52.3M)"): one decimal, dropped when zero, and the
// largest binary unit letter.
func byteSize(n uint64) string {
	units := []struct {
		size   uint64
		letter string
	}{
		{1 << 60, "E"}, {1 << 50, "P"}, {1 << 40, "T"}, {1 << 30, "G"}, {1 << 20, "M"}, {1 << 10, "K"},
	}
	for _, u := range units {
		if n >= u.size {
			return trimZero(strconv.FormatFloat(float64(n)/float64(u.size), 'f', 1, 64)) + u.letter
		}
	}
	if n == 0 {
		return "0B"
	}
	return strconv.FormatUint(n, 10) + "B"
}

func trimZero(s string) string {
	return strings.TrimSuffix(s, ".0")
}
