"""integration tier"""
