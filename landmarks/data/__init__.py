"""Getting training and evaluation data: resumable verified downloads, the GLDv2 subset builder."""
