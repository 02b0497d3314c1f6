package bifrost

import (
	"encoding/json"
	"io"
	"iter"

	"github.com/iris-cf/iris/models"
)

// schedulingInfosChunk is how much of GET /apps's body is written at a
// time: the whole body is about 240 bytes per LRP, 24 MB at 100,000 LRPs,
// which encoding/json would build in one buffer per request.
const schedulingInfosChunk = 32 << 10

// writeSchedulingInfos writes GET /apps's body for infos to w, byte for
// byte what json.NewEncoder(w).Encode(models.DesiredLRPSchedulingInfosResponse{...})
// writes, in chunks. CC lists every LRP every 30 s; encoding/json spent
// most of that answer reflecting over 100,000 structs of four strings.
// Strings that need escaping (none that Iris makes: guids, versions,
// timestamps) are escaped by encoding/json itself, so the bytes cannot
// differ.
func writeSchedulingInfos(w io.Writer, infos iter.Seq[*models.DesiredLRPSchedulingInfo]) error {
	buf := make([]byte, 0, schedulingInfosChunk+1024)
	buf = append(buf, `{"desired_lrp_scheduling_infos":[`...)
	first := true
	for info := range infos {
		if !first {
			buf = append(buf, ',')
		}
		first = false
		buf = append(buf, `{"desired_lrp_key":{"process_guid":`...)
		buf = appendJSONString(buf, info.DesiredLRPKey.ProcessGUID)
		buf = append(buf, `},"guid":`...)
		buf = appendJSONString(buf, info.GUID)
		buf = append(buf, `,"version":`...)
		buf = appendJSONString(buf, info.Version)
		buf = append(buf, `,"annotation":`...)
		buf = appendJSONString(buf, info.Annotation)
		buf = append(buf, '}')
		if len(buf) >= schedulingInfosChunk {
			if _, err := w.Write(buf); err != nil {
				return err // the client went away: stop reading the cache
			}
			buf = buf[:0]
		}
	}
	buf = append(buf, "]}\n"...)
	_, err := w.Write(buf)
	return err
}

// appendJSONString appends s as encoding/json encodes it: quoted as it is
// when every byte is printable ASCII that encoding/json leaves alone
// (it escapes '"', '\\' and, by default, '<', '>' and '&'), and through
// encoding/json otherwise.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			encoded, _ := json.Marshal(s) // a string always encodes
			return append(dst, encoded...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}
