"""OCI images: references, the distribution client, the blob cache, unpacked bases."""
