"""Outputs people can open: view grids, turntable video, meshes, density volumes, HTML report, latents."""
