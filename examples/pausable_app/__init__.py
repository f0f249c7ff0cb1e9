"""An application that pauses for cluster-wide snapshots: pairs of writes behind rpc.Admin."""
