"""The device registry: which boards exist, their tags and settings, loaded and watched."""
