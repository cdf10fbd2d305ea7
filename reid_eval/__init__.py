"""CMC / mAP / mINP and occlusion-unified ("occlude them all") evaluation; not implemented yet."""
